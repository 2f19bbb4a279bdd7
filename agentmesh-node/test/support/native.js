'use strict'
// The addon's per-step protocol for the tests that drive a NativeRun by hand: `poll` and
// `outstanding` return one string (src/activation.rs), turned here into plain objects, and
// NativeCompletion's factories take the activation's id and node.

const native = require('../../native.js')

const KEYS = ['id', 'node', 'kind', 'name', 'attempt', 'visit', 'delayMs', 'timeoutMs', 'step', 'seed', 'prompt']

/** The activations of a poll text, with `deps` parsed and `input` from the run. */
function activations(text, run) {
  const nl = text.indexOf('\n')
  let start = nl + 1
  return JSON.parse(text.slice(0, nl)).map((record) => {
    const a = {}
    KEYS.forEach((k, i) => {
      if (record[i] !== null) a[k] = record[i]
    })
    a.seed = BigInt(a.seed)
    let end = nl + 1 + record[11]
    a.deps = JSON.parse(text.slice(start, end))
    start = end
    a.reads = {}
    // A map item's record, one with reads or a retry's: [itemIndex, itemKey, valueEnd, readsEnd] more.
    if (record.length > 12) {
      end = nl + 1 + record[14]
      if (record[12] !== null) {
        a.item = { index: record[12] }
        if (record[13] !== null) a.item.key = record[13]
        a.item.value = JSON.parse(text.slice(start, end))
      }
      start = end
      end = nl + 1 + record[15]
      if (end > start) a.reads = JSON.parse(text.slice(start, end))
      start = end
    }
    // A retry's record: the failure it retries, a seventeenth entry.
    if (record.length > 16 && record[16] !== null) a.lastFailure = record[16]
    // A sub-workflow node's record: its own input's text, ending at an eighteenth.
    if (record.length > 17) {
      end = nl + 1 + record[17]
      a.input = JSON.parse(text.slice(start, end))
      start = end
    } else {
      a.input = JSON.parse(run.inputJson())
    }
    return a
  })
}

const poll = (run) => activations(run.poll(), run)
const outstanding = (run) => activations(run.outstanding(), run)

/** NativeCompletion's factories, given an activation object. */
const C = {
  ok: (a, ...rest) => native.NativeCompletion.ok(a.id, a.node, ...rest),
  okJson: (a, ...rest) => native.NativeCompletion.okJson(a.id, a.node, ...rest),
  err: (a, ...rest) => native.NativeCompletion.err(a.id, a.node, ...rest),
  timedOut: (a) => native.NativeCompletion.timedOut(a.id, a.node),
  unreadable: (a, ...rest) => native.NativeCompletion.unreadable(a.id, a.node, ...rest),
}

module.exports = { KEYS, activations, poll, outstanding, C }
