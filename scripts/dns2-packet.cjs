// What labctl uses of dns2 (its Packet codec), for the bundle (scripts/bundle.mjs maps `dns2` here).
// dns2's index also loads its UDP, TCP and DNS-over-HTTPS servers and clients (and with them http,
// https and tls): ~25-35 ms CPU per run of every command that resolves a lab name, for code labctl
// never calls (its stub resolver in src/net/dns.ts has its own UDP/TCP transport). Any other name
// throws at once instead of being undefined.
'use strict'
const Packet = require('../node_modules/dns2/packet.js')

module.exports = new Proxy(
  { Packet },
  {
    get(target, key) {
      if (typeof key === 'symbol' || key in target || key === '__esModule') return target[key]
      throw new Error(`dns2.${String(key)} is not in the bundle: add it to scripts/dns2-packet.cjs`)
    },
  },
)
