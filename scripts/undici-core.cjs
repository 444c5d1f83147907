// What labctl uses of undici (Agent, request), for the bundle (scripts/bundle.mjs maps `undici` here).
// undici's index also loads fetch, WebSocket, EventSource, cookies, caches, mocks and proxy agents, and
// through them Node's own bundled copy of undici: ~100 ms CPU per run of any HTTP command, for code
// labctl never calls. Same modules, same behaviour, for the two names labctl imports.
'use strict'
const Agent = require('undici/lib/dispatcher/agent.js')
const apiRequest = require('undici/lib/api/api-request.js')
const { getGlobalDispatcher } = require('undici/lib/global.js')

/** request(url, opts): as undici's, for an absolute URL (string or URL) and an options object. */
function request(url, opts = {}) {
  const u = url instanceof URL ? url : new URL(String(url))
  const { dispatcher = getGlobalDispatcher(), ...rest } = opts
  return apiRequest.call(dispatcher, {
    ...rest,
    origin: u.origin,
    path: u.search ? `${u.pathname}${u.search}` : u.pathname,
    method: rest.method || (rest.body ? 'PUT' : 'GET'),
  })
}

module.exports = { Agent, request }
