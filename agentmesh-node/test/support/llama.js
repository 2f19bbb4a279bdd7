'use strict'
// The real llama-server for tests (AGENTMESH_LLAMA_SERVER, AGENTMESH_LLM_MODEL from
// `eval "$(bash .ci/llama-server.sh)"`): start it on a free port, and a proxy in front of it
// that counts the requests reaching it (and can hold one).

const assert = require('node:assert/strict')
const childProcess = require('node:child_process')
const http = require('node:http')
const net = require('node:net')
const { test } = require('node:test')

const SERVER = process.env.AGENTMESH_LLAMA_SERVER
const MODEL = process.env.AGENTMESH_LLM_MODEL
/** Why llama-server tests skip, or `false` when the server is configured. */
const skipWithoutServer = (!SERVER || !MODEL) && 'AGENTMESH_LLAMA_SERVER / AGENTMESH_LLM_MODEL not set'

/** In CI a missing server is a failure, not a skip. */
function requireServerInCi(what) {
  if (skipWithoutServer && process.env.CI) {
    test(`llama-server is available in CI (${what})`, () => assert.fail('CI needs AGENTMESH_LLAMA_SERVER and AGENTMESH_LLM_MODEL (eval "$(bash .ci/llama-server.sh)")'))
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer()
    s.on('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

function get(url) {
  return new Promise((resolve) => {
    const req = http.get(url, (res) => {
      res.resume()
      resolve(res.statusCode)
    })
    req.on('error', () => resolve(null))
    req.setTimeout(2000, () => req.destroy())
  })
}

/** Start llama-server (one thread, model alias `smollm2`) and wait until it is healthy. */
async function startLlamaServer() {
  const port = await freePort()
  const child = childProcess.spawn(
    SERVER,
    ['-m', MODEL, '--host', '127.0.0.1', '--port', String(port), '-t', '1', '-c', '2048', '-np', '1', '--no-cache-prompt', '--alias', 'smollm2', '--no-webui'],
    { stdio: 'ignore' },
  )
  for (let i = 0; i < 600; i++) {
    if ((await get(`http://127.0.0.1:${port}/health`)) === 200) return { port, stop: () => child.kill('SIGKILL') }
    if (child.exitCode !== null) break
    await new Promise((r) => setTimeout(r, 100))
  }
  child.kill('SIGKILL')
  throw new Error('llama-server did not become healthy')
}

/** A proxy in front of `upstreamPort` counting requests; `state.onRequest(n, req)` returning
 * `'hold'` leaves request n hanging. */
function proxy(upstreamPort) {
  const state = { count: 0, onRequest: null }
  const server = http.createServer((req, res) => {
    state.count++
    const n = state.count
    if (state.onRequest !== null && state.onRequest(n, req) === 'hold') return // left hanging
    const up = http.request({ host: '127.0.0.1', port: upstreamPort, path: req.url, method: req.method, headers: req.headers }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers)
      ur.pipe(res)
    })
    up.on('error', () => res.destroy())
    req.pipe(up)
  })
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve({ server, state, port: server.address().port })))
}

module.exports = { skipWithoutServer, requireServerInCi, startLlamaServer, proxy }
