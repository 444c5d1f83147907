// The hostile-input suite's harness: runs the built CLI (dist/, via bin/run.js) as a child with a capped
// heap, samples its peak RSS from /proc, kills it at a deadline, and checks the contract every hostile
// input must meet: the documented exit code, one error line plus a `next:` line, no stack trace, an end
// within the time bound, bounded memory, and the test token nowhere in the output.
import { spawn } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { expect } from 'vitest'

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..')
export const TEST_TOKEN = 'hostileTestToken-3f9c2a7b1e5d4c8a9b0f11223344'
export const WORK = mkdtempSync(join(tmpdir(), 'labctl-hostile-'))

export type CliRun = { code: number | 'killed'; stdout: string; stderr: string; ms: number; peakRssMb: number }

let written = 0
/** Writes a test file atomically: cases run concurrently, and several write the same file (e.g. ok.yaml) while
 *  another case's labctl reads it, which must never see it half-written. */
export function file(name: string, content: string | Buffer): string {
  const p = join(WORK, name)
  const tmp = `${p}.${process.pid}.${++written}.tmp`
  writeFileSync(tmp, content, { mode: 0o600 })
  renameSync(tmp, p)
  return p
}

function peakRss(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) / 1024 : undefined
  } catch {
    return undefined
  }
}

/** Runs `labctl ARGS` from dist/ with a 192 MB heap cap; killed after `killAfterMs`. */
export function runLabctl(args: string[], opts: { env?: NodeJS.ProcessEnv; stdin?: string | Buffer; killAfterMs?: number; sigintAfterMs?: number } = {}): Promise<CliRun> {
  const bin = join(ROOT, 'bin', 'run.js')
  if (!existsSync(join(ROOT, 'dist'))) throw new Error('build first: npm run -s build (the hostile CLI cases run dist/)')
  const env = {
    PATH: process.env.PATH,
    HOME: WORK,
    XDG_CONFIG_HOME: join(WORK, 'config'),
    XDG_STATE_HOME: join(WORK, 'state'),
    TRIVY_TOKEN: TEST_TOKEN,
    LABCTL_NO_PROMPT: '1',
    NO_COLOR: '1',
    ...opts.env,
  }
  const started = performance.now()
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, ['--max-old-space-size=192', bin, ...args], {
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    let peak = 0
    let killed = false
    child.stdout.on('data', (d: Buffer) => {
      if (stdout.length < 4_000_000) stdout += d.toString()
    })
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4_000_000) stderr += d.toString()
    })
    const sampler = setInterval(() => {
      const r = child.pid ? peakRss(child.pid) : undefined
      if (r) peak = Math.max(peak, r)
    }, 15)
    const killer = setTimeout(() => {
      killed = true
      child.kill('SIGKILL')
    }, opts.killAfterMs ?? 20_000)
    const interrupter = opts.sigintAfterMs === undefined ? undefined : setTimeout(() => child.kill('SIGINT'), opts.sigintAfterMs)
    child.stdin.on('error', () => {})
    if (typeof opts.stdin === 'string' || Buffer.isBuffer(opts.stdin)) child.stdin.end(opts.stdin)
    else child.stdin.end()
    child.on('close', (code) => {
      clearInterval(sampler)
      clearTimeout(killer)
      clearTimeout(interrupter)
      resolveRun({ code: killed ? 'killed' : (code ?? -1), stdout, stderr, ms: performance.now() - started, peakRssMb: peak })
    })
  })
}

export type Expect = {
  code: number
  /** What the error line (or, for exit 3, the output) must say. */
  match: RegExp
  /** Time bound in ms, child start included (a loaded CI machine takes seconds to start node): a guard against hangs; the in-process cases bound the work itself tightly. */
  withinMs?: number
  maxRssMb?: number
  /** Further strings that must not appear anywhere in the output (besides the test token). */
  secrets?: string[]
}

// eslint-disable-next-line no-control-regex
const RAW_CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f\u202a-\u202e\u2066-\u2069]/

/** The contract for one hostile input, on a CLI run. */
export function expectContract(r: CliRun, e: Expect): void {
  const all = `${r.stdout}\n${r.stderr}`
  const ctx = `exit ${r.code} after ${Math.round(r.ms)} ms, ${Math.round(r.peakRssMb)} MB\n--- stdout\n${r.stdout.slice(0, 2000)}\n--- stderr\n${r.stderr.slice(0, 2000)}`
  expect(r.code, ctx).toBe(e.code)
  expect(all, ctx).toMatch(e.match)
  // No stack trace, no "bug" verdict.
  expect(all, ctx).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m)
  expect(all, ctx).not.toMatch(/labctl bug/)
  // The token (and any other secret of the case) never appears.
  for (const s of [TEST_TOKEN, ...(e.secrets ?? [])]) expect(all.includes(s), `secret "${s}" in output\n${ctx}`).toBe(false)
  // Nothing from the input steers the terminal.
  expect(RAW_CONTROL.test(all), `raw control character in output\n${ctx}`).toBe(false)
  if (e.code === 1 || e.code === 2) {
    const errorLines = r.stderr.split('\n').filter((l) => l.startsWith('labctl: error:'))
    expect(errorLines.length, ctx).toBe(1)
    expect(r.stderr, ctx).toMatch(/^ {2}next: \S/m)
    // Capped: a few lines, never one per problem of a huge input.
    expect(r.stderr.split('\n').length, ctx).toBeLessThanOrEqual(30)
  } else if (e.code === 3) {
    expect(all, ctx).toMatch(/next: \S|"fix": "\S/)
  }
  expect(r.ms, ctx).toBeLessThan(e.withinMs ?? 15_000)
  expect(r.peakRssMb, ctx).toBeLessThan(e.maxRssMb ?? 300)
}

/** A minimal valid inventory (loopback), with overrides as YAML text lines appended per section. */
export function inventory(o: { servers?: string[]; publicUrl?: string; host?: string; thresholds?: string; trivy?: string; extra?: string; timeoutMs?: number } = {}): string {
  return [
    'name: hostile',
    `dns: {servers: [${(o.servers ?? ['127.0.0.1:1']).map((s) => JSON.stringify(s)).join(', ')}], timeoutMs: ${o.timeoutMs ?? 300}}`,
    'trivy:',
    '  version: 0.74.0',
    `  publicUrl: ${JSON.stringify(o.publicUrl ?? 'https://trivy.lab.test')}`,
    `  hosts: [${o.host ?? '{name: trivy-0, fqdn: trivy-0.lab.test}'}]`,
    ...(o.trivy ? [o.trivy] : []),
    ...(o.thresholds ? [`thresholds: ${o.thresholds}`] : []),
    ...(o.extra ? [o.extra] : []),
    '',
  ].join('\n')
}
