'use strict'
// blake3 (hash mode, 32 bytes) for the tests that check a repaired output's digests: a port of
// the reference implementation (Node's crypto has no blake3). Slow, but the tests hash a few
// hundred bytes; structured-output.test.js checks it against the core's own hash first
// (`Workflow.hash` is blake3 of the canonical workflow JSON).

const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
const PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
const CHUNK_START = 1
const CHUNK_END = 2
const PARENT = 4
const ROOT = 8

const rotr = (x, n) => ((x >>> n) | (x << (32 - n))) >>> 0

function g(s, a, b, c, d, x, y) {
  s[a] = (s[a] + s[b] + x) >>> 0
  s[d] = rotr(s[d] ^ s[a], 16)
  s[c] = (s[c] + s[d]) >>> 0
  s[b] = rotr(s[b] ^ s[c], 12)
  s[a] = (s[a] + s[b] + y) >>> 0
  s[d] = rotr(s[d] ^ s[a], 8)
  s[c] = (s[c] + s[d]) >>> 0
  s[b] = rotr(s[b] ^ s[c], 7)
}

/** The first 8 words of the compression of a 64-byte `block` (a chaining value). */
function compress(cv, block, counter, blockLen, flags) {
  let m = Array.from({ length: 16 }, (_, i) => block.readUInt32LE(4 * i))
  const s = [...cv.slice(0, 8), ...IV.slice(0, 4), counter >>> 0, Math.floor(counter / 2 ** 32) >>> 0, blockLen, flags]
  for (let r = 0; r < 7; r++) {
    g(s, 0, 4, 8, 12, m[0], m[1])
    g(s, 1, 5, 9, 13, m[2], m[3])
    g(s, 2, 6, 10, 14, m[4], m[5])
    g(s, 3, 7, 11, 15, m[6], m[7])
    g(s, 0, 5, 10, 15, m[8], m[9])
    g(s, 1, 6, 11, 12, m[10], m[11])
    g(s, 2, 7, 8, 13, m[12], m[13])
    g(s, 3, 4, 9, 14, m[14], m[15])
    if (r < 6) m = PERMUTATION.map((i) => m[i])
  }
  return Array.from({ length: 8 }, (_, i) => (s[i] ^ s[i + 8]) >>> 0)
}

/** The chaining value of one chunk (at most 1024 bytes); the root output when `root`. */
function chunk(data, counter, root) {
  let cv = IV.slice()
  const blocks = []
  for (let i = 0; i < data.length; i += 64) blocks.push(data.subarray(i, i + 64))
  if (blocks.length === 0) blocks.push(Buffer.alloc(0))
  blocks.forEach((block, i) => {
    const last = i === blocks.length - 1
    const flags = (i === 0 ? CHUNK_START : 0) | (last ? CHUNK_END : 0) | (root && last ? ROOT : 0)
    const padded = Buffer.alloc(64)
    block.copy(padded)
    cv = compress(cv, padded, counter, block.length, flags)
  })
  return cv
}

function parent(left, right, root) {
  const block = Buffer.alloc(64)
  ;[...left, ...right].forEach((w, i) => block.writeUInt32LE(w, 4 * i))
  return compress(IV, block, 0, 64, PARENT | (root ? ROOT : 0))
}

function tree(chunks, first, root) {
  if (chunks.length === 1) return chunk(chunks[0], first, root)
  // The left subtree holds the largest power of two of chunks smaller than all of them.
  let left = 1
  while (left * 2 < chunks.length) left *= 2
  return parent(tree(chunks.slice(0, left), first, false), tree(chunks.slice(left), first + left, false), root)
}

/** blake3 of `data` (a string as UTF-8, or bytes), as lowercase hex. */
function blake3Hex(data) {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf-8') : Buffer.from(data)
  const chunks = []
  for (let i = 0; i < bytes.length; i += 1024) chunks.push(bytes.subarray(i, i + 1024))
  if (chunks.length === 0) chunks.push(Buffer.alloc(0))
  const out = Buffer.alloc(32)
  tree(chunks, 0, true).forEach((w, i) => out.writeUInt32LE(w, 4 * i))
  return out.toString('hex')
}

module.exports = { blake3Hex }
