'use strict'
// CRC32C (Castagnoli, reflected polynomial 0x82F63B78) for the tests that re-seal format-2
// logs. `append(crc, bytes)` continues a running CRC the way the core's chain does (the header
// starts from 0); the anchors test checks the re-sealing helper against the core's own values.

const TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

function append(crc, bytes) {
  let c = (crc ^ 0xffffffff) >>> 0
  for (const b of bytes) c = (TABLE[(c ^ b) & 0xff] ^ (c >>> 8)) >>> 0
  return (c ^ 0xffffffff) >>> 0
}

if (append(0, Buffer.from('123456789')) !== 0xe3069283) throw new Error('crc32c: wrong check value')

module.exports = { append }
