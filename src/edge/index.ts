// The HAProxy edge of a fleet: read its servers' states, drain / re-enable one, wait for its in-flight
// requests. Commands reach HAProxy's runtime API (its admin unix socket) through a transport: over SSH,
// a forwarded stream to the socket on the edge machine (OpenSSH's direct-streamlocal; nothing listens
// on the network, nothing runs on the edge but sshd); or, on the edge machine itself, the socket directly.
import { connect as netConnect } from 'node:net'
import type { Duplex } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { InterruptedError, LabctlError, oneLine } from '../errors.js'
import type { EdgeConfig, Inventory } from '../inventory/schema.js'
import type { Remote } from '../ssh/remote.js'
import type { SshTarget } from '../ssh/target.js'
import { commands, edgeServers, runtimeError, type EdgeServer, type ServerAdminState } from './runtime.js'

export type { EdgeServer, ServerAdminState } from './runtime.js'

/** Sends one runtime API command, returns HAProxy's whole answer (it closes the stream after it). */
export type EdgeTransport = (command: string, timeoutMs: number) => Promise<string>

/** HAProxy answers one command per connection in non-interactive mode; an answer bigger than this is not one labctl asked for. */
const MAX_ANSWER = 4 * 1024 * 1024

/** One command over an open stream to the socket: write it, read until HAProxy closes, bounded in time and size. */
export function exchange(stream: Duplex, command: string, timeoutMs: number, where: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let bytes = 0
    let done = false
    const finish = (err?: Error): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      stream.destroy()
      if (err) reject(err)
      else resolve(Buffer.concat(chunks).toString('utf8'))
    }
    const timer = setTimeout(
      () => finish(new LabctlError(`HAProxy's runtime API on ${where} did not answer \`${command.split(' ').slice(0, 2).join(' ')}\` within ${timeoutMs} ms`, { code: 'EDGE_TIMEOUT', suggestion: 'check that HAProxy runs on the edge (`systemctl status haproxy`) and edge.socket is its `stats socket`' })),
      timeoutMs,
    )
    stream.on('data', (c: Buffer) => {
      bytes += c.length
      if (bytes > MAX_ANSWER) return finish(new LabctlError(`HAProxy's answer on ${where} exceeds ${MAX_ANSWER} bytes`, { code: 'EDGE_FORMAT' }))
      chunks.push(c)
    })
    stream.on('end', () => finish())
    stream.on('close', () => finish())
    stream.on('error', (e: Error) => finish(new LabctlError(`HAProxy's runtime API on ${where}: ${oneLine(e.message, 160)}`, { code: 'EDGE_SOCKET', cause: e })))
    stream.write(`${command}\n`)
  })
}

/** The runtime API on this machine's unix socket (the edge machine itself, or a test). */
export function socketTransport(path: string): EdgeTransport {
  return (command, timeoutMs) =>
    new Promise((resolve, reject) => {
      const s = netConnect({ path })
      s.once('error', (e: NodeJS.ErrnoException) => {
        reject(new LabctlError(`cannot open HAProxy's runtime API socket ${path}: ${e.code ?? oneLine(e.message, 120)}`, { code: 'EDGE_SOCKET', suggestion: 'check `stats socket` in haproxy.cfg and that this user may open it' }))
      })
      s.once('connect', () => {
        s.removeAllListeners('error')
        exchange(s, command, timeoutMs, path).then(resolve, reject)
      })
    })
}

/** The SSH target of the edge machine, as the session's Remote connects to it. */
export function edgeTarget(edge: EdgeConfig): SshTarget {
  const { ssh } = edge
  return {
    name: 'edge',
    host: edge.host,
    ...(ssh.user ? { user: ssh.user } : {}),
    ...(ssh.port ? { port: ssh.port } : {}),
    ...(ssh.identityFile ? { identityFile: ssh.identityFile } : {}),
    ...(ssh.knownHostsFile ? { knownHostsFile: ssh.knownHostsFile } : {}),
    ...(ssh.jumpHost ? { jumpHost: ssh.jumpHost } : {}),
    connectTimeoutMs: ssh.connectTimeoutMs,
  }
}

/** The runtime API over the session's SSH connection to the edge: a forwarded stream to the socket. */
export function sshTransport(remote: Remote, edge: EdgeConfig): EdgeTransport {
  const target = edgeTarget(edge)
  return async (command, timeoutMs) => {
    const { client } = await remote.connect(target)
    const stream = await new Promise<Duplex>((resolve, reject) => {
      const timer = setTimeout(() => reject(new LabctlError(`the edge ${edge.host} did not open a stream to ${edge.socket} within ${timeoutMs} ms`, { code: 'EDGE_TIMEOUT' })), timeoutMs)
      client.openssh_forwardOutStreamLocal(edge.socket, (err, ch) => {
        clearTimeout(timer)
        if (err) {
          reject(
            new LabctlError(`the edge ${edge.host} refused a stream to ${edge.socket}: ${oneLine(err.message, 160)}`, {
              code: 'EDGE_SOCKET',
              suggestion: `check that ${edge.socket} is HAProxy's \`stats socket\` (level admin), that the SSH user may open it (its group/mode), and AllowStreamLocalForwarding in the edge's sshd_config`,
            }),
          )
        } else resolve(ch)
      })
    })
    return exchange(stream, command, timeoutMs, `${edge.host}:${edge.socket}`)
  }
}

export type Edge = {
  backend: string
  /** Where the edge is, for messages: "edge.lab:/run/haproxy/admin.sock". */
  where: string
  servers(): Promise<EdgeServer[]>
  server(name: string): Promise<EdgeServer>
  setState(name: string, state: ServerAdminState): Promise<EdgeServer>
  /** Waits (bounded) until NAME has no request in flight; returns how many were left (0 = drained). */
  waitIdle(name: string, o?: { timeoutMs?: number; pollMs?: number; signal?: AbortSignal }): Promise<{ inFlight: number; waitedMs: number }>
}

export function makeEdge(o: { transport: EdgeTransport; backend: string; where: string; timeoutMs?: number }): Edge {
  const timeoutMs = o.timeoutMs ?? 5000
  const send = o.transport
  const servers = async (): Promise<EdgeServer[]> => {
    const [state, stat] = await Promise.all([send(commands.serversState(o.backend), timeoutMs), send(commands.stat(o.backend), timeoutMs)])
    const list = edgeServers(o.backend, state, stat)
    if (list.length === 0 && !/be_name/.test(state)) {
      throw new LabctlError(`the edge ${o.where} has no backend "${o.backend}"`, { code: 'EDGE_NO_BACKEND', suggestion: 'set edge.backend to the backend of haproxy.cfg that lists the scanner hosts (`labctl trivy install --haproxy` renders it)' })
    }
    return list
  }
  const server = async (name: string): Promise<EdgeServer> => {
    const list = await servers()
    const s = list.find((x) => x.name === name)
    if (!s) {
      throw new LabctlError(`the edge backend ${o.backend} has no server "${name}" (it has ${list.map((x) => x.name).join(', ') || 'none'})`, {
        code: 'EDGE_NO_SERVER',
        suggestion: 'the server names of the backend must be the inventory host names: re-render it with `labctl trivy install --haproxy`',
      })
    }
    return s
  }
  return {
    backend: o.backend,
    where: o.where,
    servers,
    server,
    async setState(name, state) {
      await server(name)
      const answer = await send(commands.setState(o.backend, name, state), timeoutMs)
      const err = runtimeError(answer) ?? (answer.trim() ? oneLine(answer, 200) : undefined)
      if (err) throw new LabctlError(`HAProxy refused to set ${o.backend}/${name} to ${state}: ${err}`, { code: 'EDGE_REFUSED', suggestion: 'the runtime API socket needs `level admin` in haproxy.cfg' })
      const after = await server(name)
      if (after.admin !== state) throw new LabctlError(`${o.backend}/${name} is ${after.admin} after \`set server … state ${state}\``, { code: 'EDGE_STATE', suggestion: 'another operator or a health check changed it; run it again' })
      return after
    },
    async waitIdle(name, w = {}) {
      const limit = w.timeoutMs ?? 60_000
      const started = Date.now()
      let s = await server(name)
      while (s.inFlight > 0 && Date.now() - started < limit) {
        if (w.signal?.aborted) throw new InterruptedError()
        await sleep(w.pollMs ?? 200)
        s = await server(name)
      }
      return { inFlight: s.inFlight, waitedMs: Date.now() - started }
    },
  }
}

/** The inventory's edge over the session's SSH connection; undefined without an `edge:` section (no draining). */
export function inventoryEdge(inv: Inventory, remote: Remote): Edge | undefined {
  if (!inv.edge) return undefined
  return makeEdge({ transport: sshTransport(remote, inv.edge), backend: inv.edge.backend, where: `${inv.edge.host}:${inv.edge.socket}`, timeoutMs: inv.edge.timeoutMs })
}
