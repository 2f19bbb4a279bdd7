'use strict'
// The `agentmesh` package entry point. For now it re-exports the native addon's API as the
// generated loader (native.js) provides it; see README.md for what it offers. The TypeScript
// surface (Mesh, Promise-based agents, error classes) will be built on top of it here.
module.exports = require('./native.js')
