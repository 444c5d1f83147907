// Shared by the lab-network tests: what the machine looks like, and TCP probes from inside a namespace.
import { execa } from 'execa'
import { inNetns } from '../../src/sandbox/netns.js'

export const sh = async (cmd: string[]): Promise<string> => String((await execa(cmd[0]!, cmd.slice(1), { timeout: 10_000 })).stdout)

/** What the machine's own namespace looks like: namespaces, links, routes, listening sockets. */
export async function machine(): Promise<{ netns: string[]; links: string[]; routes: string[]; listening: string[] }> {
  const netns = (await sh(['ip', 'netns', 'list'])).split('\n').map((l) => l.split(/\s+/)[0]!).filter(Boolean).sort()
  const links = (await sh(['ip', '-o', 'link', 'show'])).split('\n').map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1] ?? '').filter(Boolean).sort()
  const routes = (await sh(['ip', '-4', 'route', 'show', 'table', 'all'])).split('\n').filter(Boolean).sort()
  // Other programs on a shared machine open and close loopback ports: compare what touches the lab range.
  const listening = (await sh(['ss', '-Htlnu'])).split('\n').filter((l) => /198\.1[89]\./.test(l)).sort()
  return { netns, links, routes, listening }
}

/** A TCP connect from inside a namespace (or from the machine), with a timeout: "open" | "closed" | "timeout" | "unreachable". */
export async function probe(ns: string | undefined, host: string, port: number): Promise<string> {
  const js = `const s=require('net').connect({host:${JSON.stringify(host)},port:${port}});s.setTimeout(1500,()=>{console.log('timeout');process.exit(0)});s.on('connect',()=>{console.log('open');process.exit(0)});s.on('error',e=>{console.log(e.code==='ECONNREFUSED'?'closed':'unreachable');process.exit(0)})`
  const argv = [...(ns ? inNetns(ns) : []), process.execPath, '-e', js]
  return String((await execa(argv[0]!, argv.slice(1), { timeout: 10_000 })).stdout).trim()
}


type Machine = Awaited<ReturnType<typeof machine>>
/**
 * The machine without the parts of other labs (other sandboxes — other test runs on a shared machine — come
 * and go meanwhile): every entry naming a `lab-ID-` other than this lab's is left out; all else is compared.
 */
export function apartFromOtherLabs(m: Machine, ownLink: string): Machine {
  const own = /^(lab-[0-9a-f]+-)/.exec(ownLink)?.[1] ?? ownLink
  const keep = (l: string): boolean => !/lab-[0-9a-f]{6}-/.test(l) || l.includes(own)
  // A route of another lab names its link; its local/broadcast lines name it too.
  return { netns: m.netns.filter(keep), links: m.links.filter(keep), routes: m.routes.filter(keep), listening: m.listening }
}
