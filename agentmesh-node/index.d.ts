// Types of the `agentmesh` package entry point: for now, the native addon's API
// (generated into native.d.ts by `napi build`; see scripts/check-typings.sh).
export * from './native'
