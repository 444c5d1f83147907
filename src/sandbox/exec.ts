// `labctl sandbox exec NODE -- CMD…`: a command on one machine of the lab, argv passed as is.
import { execa } from 'execa'
import { LabctlError, UsageError } from '../errors.js'
import { readState, sandboxDir, type SandboxState } from './layout.js'
import { NODES, type NodeName } from './netns.js'
import { isAlive } from './proc.js'

/** The argv that runs CMD on NODE: its network namespace; on trivy-0 also the host's mount and UTS namespaces. */
export function nodeCommand(state: SandboxState, node: string, cmd: string[]): string[] {
  if (!(NODES as readonly string[]).includes(node)) throw new UsageError(`unknown node "${node}"`, { suggestion: `use one of: ${NODES.join(', ')}` })
  if (cmd.length === 0) throw new UsageError('nothing to run', { suggestion: 'give the command after --, e.g. `labctl sandbox exec agent -- ip addr`' })
  const n = node as NodeName
  if (n === 'trivy-0') {
    // The scanner host: its own /etc, /usr, /var (private mount namespace) and, with --net, its own network.
    const pid = state.pids.host
    if (!pid || !isAlive(pid)) throw new LabctlError('the sandbox host trivy-0 is not running', { code: 'SANDBOX_DOWN', suggestion: 'run `labctl sandbox up` (or `labctl sandbox heal --all`)' })
    return ['nsenter', '-t', String(pid), '-m', '-u', '-n', '--', ...cmd]
  }
  if (!state.net) {
    throw new LabctlError(`this sandbox runs on 127.0.0.1: there is no machine "${n}" (only trivy-0, the scanner host)`, {
      code: 'SANDBOX_NOT_NET',
      suggestion: '`labctl sandbox down && labctl sandbox up` for the lab network (not `--loopback`)',
    })
  }
  return ['nsenter', `--net=/run/netns/${state.net.nodes[n].ns}`, '--', ...cmd]
}

export type SandboxExecResult = { node: string; exitCode: number; stdout?: string; stderr?: string }

/**
 * Runs CMD on NODE. With `capture`, output is collected and returned; otherwise the command uses the
 * caller's terminal. The command's exit code is returned as is; it is killed after `timeoutMs`.
 */
export async function sandboxExec(node: string, cmd: string[], opts: { dir?: string; capture?: boolean; timeoutMs?: number } = {}): Promise<SandboxExecResult> {
  const state = readState(opts.dir ?? sandboxDir())
  if (!state) throw new LabctlError('the sandbox is not up', { code: 'SANDBOX_DOWN', suggestion: 'run `labctl sandbox up` first' })
  const argv = nodeCommand(state, node, cmd)
  const r = await execa(argv[0]!, argv.slice(1), {
    reject: false,
    timeout: opts.timeoutMs ?? 600_000,
    ...(opts.capture ? { stdin: 'ignore' as const } : { stdio: 'inherit' as const }),
  })
  if (r.timedOut) throw new LabctlError(`\`${cmd[0]}\` on ${node} did not finish within ${opts.timeoutMs ?? 600_000} ms and was stopped`, { suggestion: 'give a larger --timeout' })
  if (r.failed && r.exitCode === undefined) {
    throw new LabctlError(`could not run \`${cmd[0]}\` on ${node}: ${r.shortMessage ?? 'unknown error'}`, { suggestion: 'check the command name (it runs with the machine\'s own PATH)' })
  }
  return { node, exitCode: r.exitCode ?? 1, ...(opts.capture ? { stdout: String(r.stdout), stderr: String(r.stderr) } : {}) }
}
