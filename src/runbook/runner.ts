// Runs the real labctl binary for each step, as a subprocess: the same code paths, exit codes and JSON
// an operator gets. Its own process group, so a Ctrl-C reaches it once, forwarded by the runbook (the
// step then finishes safely and exits 130) instead of twice (which would make it quit at once).
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { projectRoot } from './catalog.js'
import type { Runner } from './engine-types.js'

/** The labctl to run: $LABCTL_BIN, else this project's bin/run.js under the running Node.js. */
export function labctlCommand(env: NodeJS.ProcessEnv = process.env): string[] {
  if (env.LABCTL_BIN) return [env.LABCTL_BIN]
  const run = join(projectRoot(), 'bin', 'run.js')
  if (existsSync(run)) return [process.execPath, run]
  return [join(projectRoot(), 'bin', 'labctl')]
}

export function labctlRunner(opts: { env?: NodeJS.ProcessEnv; command?: string[] } = {}): Runner {
  const [cmd, ...pre] = opts.command ?? labctlCommand(opts.env)
  return async (argv, { signal, timeoutMs }) => {
    const child = execa(cmd!, [...pre, ...argv], {
      reject: false,
      stdin: 'ignore',
      detached: true,
      env: { ...(opts.env ?? process.env), LABCTL_NO_PROMPT: '1', NO_COLOR: '1', FORCE_COLOR: '0' },
      extendEnv: false,
      timeout: timeoutMs,
      killSignal: 'SIGINT',
      forceKillAfterDelay: 15_000,
      maxBuffer: 64 * 1024 * 1024,
      stripFinalNewline: false,
    })
    let interrupted = false
    const onAbort = (): void => {
      interrupted = true
      child.kill('SIGINT')
    }
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    try {
      const r = await child
      return {
        exitCode: typeof r.exitCode === 'number' ? r.exitCode : null,
        stdout: String(r.stdout ?? ''),
        stderr: String(r.stderr ?? ''),
        interrupted,
        timedOut: Boolean(r.timedOut),
      }
    } finally {
      signal.removeEventListener('abort', onAbort)
    }
  }
}
