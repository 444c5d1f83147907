// HAProxy's runtime API, as text: the commands labctl sends and the parsers of what HAProxy answers.
// Pure functions (no I/O), shared by the edge client (src/edge/index.ts) and the tests.
import { LabctlError, UsageError, oneLine } from '../errors.js'

/** What labctl may ask an edge server to become: in the pool, out of new traffic, out of all traffic. */
export const SERVER_STATES = ['ready', 'drain', 'maint'] as const
export type ServerAdminState = (typeof SERVER_STATES)[number]

/** HAProxy's srv_admin_state bits (src/server.h): forced/inherited/config maintenance, forced/inherited drain, resolution, hostname. */
const ADMIN_MAINT = 0x01 | 0x02 | 0x04 | 0x20 | 0x40
const ADMIN_DRAIN = 0x08 | 0x10
/** srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping. */
const OP_STATES = ['stopped', 'starting', 'running', 'stopping'] as const

/** One server of the backend as the edge sees it. */
export type EdgeServer = {
  /** The server's name in the backend (= the inventory host name). */
  name: string
  address: string
  port?: number
  /** `show stat`'s status: UP, DOWN, MAINT, DRAIN, NOLB, "UP 1/2" (going down), "no check"… */
  status: string
  /** Whether the edge sends it new requests: its checks pass and it is neither drained nor in maintenance. */
  up: boolean
  admin: ServerAdminState
  operational: (typeof OP_STATES)[number] | 'unknown'
  /** Requests in flight on it (current sessions + queued): what a drain waits for. */
  inFlight: number
  /** The last health check, e.g. "L7OK" or "L4CON". */
  check?: string
}

// Names go into a command line of the runtime API, where ';' separates commands and spaces separate
// words: only HAProxy's own name characters are accepted (the inventory already restricts them).
const NAME_RE = /^[A-Za-z0-9._:-]{1,64}$/
function checkName(what: string, s: string): string {
  if (!NAME_RE.test(s)) throw new UsageError(`not a valid HAProxy ${what} name: "${oneLine(s, 80)}"`, { code: 'EDGE_BAD_NAME', suggestion: 'use letters, digits, . _ : - only' })
  return s
}

export const commands = {
  /** Admin state, address, port of every server of BACKEND. */
  serversState: (backend: string) => `show servers state ${checkName('backend', backend)}`,
  /** The stats CSV for BACKEND's servers only (type 4 = servers, -1 = all of them). */
  stat: (backend: string) => `show stat ${checkName('backend', backend)} 4 -1`,
  setState: (backend: string, server: string, state: ServerAdminState) => {
    if (!SERVER_STATES.includes(state)) throw new UsageError(`not a server state: ${String(state)}`, { code: 'EDGE_BAD_STATE', suggestion: `use one of ${SERVER_STATES.join(', ')}` })
    return `set server ${checkName('backend', backend)}/${checkName('server', server)} state ${state}`
  },
}

/** An answer that is HAProxy refusing the command ("No such backend.", "Unknown command", "Permission denied"). */
export function runtimeError(answer: string): string | undefined {
  const t = answer.trim()
  if (/^(No such|Can't find|Unknown command|Permission denied|Require |Unexpected|'set server' |Invalid|Missing)/i.test(t)) return oneLine(t, 200)
  return undefined
}

type Row = Record<string, string>

/** `show servers state BACKEND`: a version line "1", a "# name name…" header, then one space-separated row per server. */
export function parseServersState(text: string): Row[] {
  const lines = text.split('\n').map((l) => l.trim()).filter(Boolean)
  const err = runtimeError(text)
  if (err) throw new LabctlError(`HAProxy refused \`show servers state\`: ${err}`, { code: 'EDGE_REFUSED', suggestion: 'check edge.backend in the inventory against the backends of haproxy.cfg' })
  if (lines.length === 0) return []
  if (lines[0] !== '1') throw new LabctlError(`unexpected \`show servers state\` format version "${oneLine(lines[0]!, 40)}" (labctl reads version 1)`, { code: 'EDGE_FORMAT', suggestion: 'check the HAProxy version on the edge (2.x and 3.x answer version 1)' })
  const header = lines.find((l) => l.startsWith('#'))
  if (!header) throw new LabctlError('`show servers state` answered without its header line', { code: 'EDGE_FORMAT' })
  const names = header.slice(1).trim().split(/\s+/)
  return lines
    .filter((l) => !l.startsWith('#') && l !== '1')
    .map((l) => {
      const cells = l.split(/\s+/)
      return Object.fromEntries(names.map((n, i) => [n, cells[i] ?? '']))
    })
}

/** `show stat` CSV: a "# pxname,svname,…" header, one comma-separated row per proxy/server. */
export function parseStat(text: string): Row[] {
  const err = runtimeError(text)
  if (err) throw new LabctlError(`HAProxy refused \`show stat\`: ${err}`, { code: 'EDGE_REFUSED', suggestion: 'check edge.backend in the inventory against the backends of haproxy.cfg' })
  const lines = text.split('\n').filter((l) => l.trim() !== '')
  const header = lines.find((l) => l.startsWith('# '))
  if (!header) {
    if (lines.length === 0) return []
    throw new LabctlError(`unexpected \`show stat\` answer: "${oneLine(lines[0]!, 80)}"`, { code: 'EDGE_FORMAT' })
  }
  const names = header.slice(2).split(',')
  return lines.filter((l) => !l.startsWith('#')).map((l) => {
    const cells = l.split(',')
    return Object.fromEntries(names.map((n, i) => [n, cells[i] ?? '']))
  })
}

const num = (s: string | undefined): number => {
  const n = Number(s)
  return Number.isFinite(n) && s !== '' ? n : 0
}

/** Joins the two answers into one record per server of BACKEND (the stats rows give status and load; the state rows the admin state and address). */
export function edgeServers(backend: string, stateText: string, statText: string): EdgeServer[] {
  const states = parseServersState(stateText).filter((r) => r.be_name === backend)
  const stats = new Map(parseStat(statText).filter((r) => r.pxname === backend && r.svname !== 'BACKEND' && r.svname !== 'FRONTEND').map((r) => [r.svname!, r]))
  return states.map((r) => {
    const admin = num(r.srv_admin_state)
    const st = stats.get(r.srv_name!)
    const status = st?.status ?? 'unknown'
    const op = OP_STATES[num(r.srv_op_state)] ?? 'unknown'
    const adminState: ServerAdminState = admin & ADMIN_MAINT ? 'maint' : admin & ADMIN_DRAIN ? 'drain' : 'ready'
    const port = num(r.srv_port)
    return {
      name: r.srv_name!,
      address: r.srv_addr ?? '',
      ...(port ? { port } : {}),
      status,
      up: adminState === 'ready' && op === 'running' && /^(UP|no check)/.test(status),
      admin: adminState,
      operational: op,
      inFlight: num(st?.scur) + num(st?.qcur),
      ...(st?.check_status ? { check: st.check_status.replace(/^\* /, '') } : {}),
    }
  })
}
