#!/usr/bin/env node
'use strict'
// The `agentmesh` command (`npx agentmesh …`, or `agentmesh` once the package is installed):
// the Rust CLI itself, linked into the addon, so its commands, output and exit codes are the
// binary's (docs/cli.md). It writes to stdout and stderr directly and blocks until done;
// Ctrl-C stops it with SIGINT's default action, as it stops the binary.

const native = require('../native.js')

process.exitCode = native.cliMain(process.argv.slice(2))
