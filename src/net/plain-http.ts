// Where the token may travel over plain HTTP (a host's debugUrl): to loopback, and to the networks the
// inventory names in trivy.plainHttpNetworks (a lab /24 behind the listener's firewall, as the seed lab's
// "plain HTTP inside the lab /24"). Anywhere else only over HTTPS, unless the operator says --insecure.
import { BlockList, isIP } from 'node:net'
import { resolveName } from './dns.js'

export const isLoopback = (address: string): boolean => address === '::1' || address.startsWith('127.') || address === 'localhost'

/** Whether an address is loopback or inside one of the CIDRs. */
export function plainHttpAddressAllowed(address: string, networks: readonly string[]): boolean {
  if (isLoopback(address)) return true
  const family = isIP(address)
  if (!family) return false
  const list = new BlockList()
  for (const n of networks) {
    const [net, bits] = n.split('/')
    const f = isIP(net ?? '')
    if (!f || bits === undefined) continue
    list.addSubnet(net!, Number(bits), f === 6 ? 'ipv6' : 'ipv4')
  }
  return list.check(address, family === 6 ? 'ipv6' : 'ipv4')
}

export type PlainHttpPolicy = {
  /** --insecure: allow it anywhere. */
  insecure?: boolean | undefined
  /** trivy.plainHttpNetworks of the inventory. */
  networks: readonly string[]
  dnsServers: readonly string[]
  dnsTimeoutMs: number
}

/**
 * Why the token must not be sent to this URL, or undefined when it may: HTTPS, --insecure, loopback, or
 * an address in trivy.plainHttpNetworks (a name is resolved with the lab's DNS, bounded by its timeout).
 */
export async function plainHttpRefusal(url: URL, policy: PlainHttpPolicy): Promise<string | undefined> {
  if (url.protocol === 'https:' || policy.insecure) return undefined
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const address = isIP(host) ? host : host === 'localhost' ? '127.0.0.1' : (await resolveName(host, [...policy.dnsServers], policy.dnsTimeoutMs)).addresses[0]
  if (address && plainHttpAddressAllowed(address, policy.networks)) return undefined
  const where = policy.networks.length ? `not loopback, nor in trivy.plainHttpNetworks ${policy.networks.join(', ')}` : 'not loopback, and the inventory names no trivy.plainHttpNetworks'
  return `refusing to send the token over plain HTTP to ${url.host} (${where})`
}
