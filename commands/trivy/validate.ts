import { checkOutputPath, writeOutputFile } from '../../src/fs/write-output.js'
import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { hostFlag } from '../_flags.js'
import { checkLine } from '../_render.js'
import { selectHosts } from '../../src/inventory/load.js'
import { UsageError, escapeTerminal } from '../../src/errors.js'
import { CHECK_NAMES, runValidate, type CheckName, type ValidateResult } from '../../src/trivy/validate.js'
import type { CheckResult, CheckSpec } from '../../src/checks/types.js'
import { LIMITS } from '../../src/inventory/schema.js'

const checkList = (v: string[] | undefined): CheckName[] | undefined => {
  if (!v) return undefined
  const names = v.flatMap((s) => s.split(',')).map((s) => s.trim()).filter(Boolean)
  for (const n of names) {
    if (!(CHECK_NAMES as readonly string[]).includes(n)) throw new UsageError(`unknown check "${n}"`, { suggestion: `use one of: ${CHECK_NAMES.join(', ')}` })
  }
  return names as CheckName[]
}

export default class TrivyValidate extends LabctlCommand<ValidateResult> {
  static override summary = 'Prove the scanner works: DNS, TLS, /healthz, /version and DB, an authenticated canary scan, and 401 without a token.'
  static override description = describe(
    `The post-change gate, for a person after a change and for Jenkins before it trusts the scanner. All checks run
concurrently, each with its own timeout, for every scanner host (or --host):
  dns      each name (private FQDN, aliases, public name) resolves at the lab's DNS servers
  tls      the public certificate verifies, matches the name, and is not near expiry
  healthz  /healthz answers "ok" through HAProxy and on each host's direct debug URL
  version  the server runs the pinned version (and the local trivy client too, when installed)
  db       the server has a vulnerability DB, fresher than the SLA
  scan     a canary scan through Twirp (PutBlob, PutArtifact, Scan) is accepted and finds the canary's CVEs
  auth     the same call without a token and with a wrong token gets 401
  image    with --image REF: a real \`trivy image --server\` run, gated on --gate severities
The token comes from the secrets dir, TRIVY_TOKEN, or --token-file PATH|- (stdin); never a flag value.`,
  )
  static override examples = [
    '<%= config.bin %> trivy validate --lab sandbox',
    '<%= config.bin %> trivy validate --json --junit validate.xml',
    '<%= config.bin %> trivy validate --only dns,tls',
    '<%= config.bin %> trivy validate --image registry.lab/app:1 --gate CRITICAL',
  ]

  static override flags = {
    host: hostFlag(),
    only: Flags.string({ summary: `Run only these checks (comma-separated: ${CHECK_NAMES.join(', ')}).`, multiple: true }),
    skip: Flags.string({ summary: 'Skip these checks (comma-separated).', multiple: true }),
    'token-file': Flags.string({ summary: 'Read the token from this file, or "-" for stdin.', env: 'LABCTL_TOKEN_FILE' }),
    image: Flags.string({ summary: 'Also scan this image with the local trivy client through the server.' }),
    gate: Flags.string({ summary: 'Severities that fail the --image check.', default: 'HIGH,CRITICAL' }),
    junit: Flags.string({ summary: 'Write a JUnit XML report here (for Jenkins).' }),
    insecure: Flags.boolean({ summary: 'Allow sending the token over plain HTTP to a non-loopback host.' }),
    timeout: Flags.integer({ summary: 'Per-check timeout in milliseconds.', default: 10_000, min: 100, max: LIMITS.timeoutMs.max }),
    'scan-timeout': Flags.integer({ summary: 'Timeout of the canary and image scans in milliseconds.', default: 60_000, min: 100, max: LIMITS.timeoutMs.max }),
  }

  async run(): Promise<ValidateResult> {
    const { flags } = await this.parse(TrivyValidate)
    if (flags.junit) checkOutputPath(flags.junit, { flag: '--junit' })
    const loaded = this.loadInventory(flags)
    const hosts = selectHosts(loaded.inventory, flags.host)
    const only = checkList(flags.only)
    const skip = checkList(flags.skip)
    const opts = {
      loaded,
      hosts,
      ...(only ? { only } : {}),
      ...(skip ? { skip } : {}),
      tokenFile: flags['token-file'],
      image: flags.image,
      gate: flags.gate.split(',').map((s) => s.trim()).filter(Boolean),
      insecure: flags.insecure,
      timeoutMs: flags.timeout,
      scanTimeoutMs: flags['scan-timeout'],
    }
    const live = !this.jsonEnabled() && process.stderr.isTTY && !process.env.CI
    const result = live ? await this.runLive(opts) : await runValidate(opts)
    for (const w of result.warnings) this.warn(w)
    if (flags.junit) writeOutputFile(flags.junit, (await import('../../src/report/junit.js')).toJUnit('labctl.trivy.validate', result.checks), { flag: '--junit' })
    if (!this.jsonEnabled()) {
      for (const r of result.checks) this.log(checkLine(r))
      const s = result.summary
      this.log(`\n${result.ok ? 'PASSED' : 'FAILED'}: ${s.pass} passed, ${s.fail} failed${s.warn ? `, ${s.warn} warnings` : ''}${s.skip ? `, ${s.skip} skipped` : ''} (lab ${result.lab})`)
    }
    if (!result.ok) this.markFailed()
    return result
  }

  /** A live listr2 view on stderr while the checks run; the final table still goes to stdout. */
  private async runLive(opts: Parameters<typeof runValidate>[0]): Promise<ValidateResult> {
    let resolveSpecs: (s: CheckSpec[]) => void = () => {}
    const specsReady = new Promise<CheckSpec[]>((r) => (resolveSpecs = r))
    const done = new Map<number, (r: CheckResult) => void>()
    const results = new Map<number, CheckResult>()
    const run = runValidate({
      ...opts,
      onStart: resolveSpecs,
      onResult: (r, i) => {
        results.set(i, r)
        done.get(i)?.(r)
      },
    })
    const specs = await Promise.race([specsReady, run.then(() => [] as CheckSpec[])])
    const { Listr, ProcessOutput } = await import('listr2')
    const list = new Listr(
      specs.map((spec, i) => ({
        title: spec.name,
        task: async (_ctx: unknown, task: { title: string; skip: (m: string) => void }) => {
          const r = results.get(i) ?? (await new Promise<CheckResult>((res) => done.set(i, res)))
          task.title = `${spec.name}: ${r.detail}`
          if (r.status === 'skip') task.skip(`${spec.name}: ${r.detail}`)
          if (r.status === 'fail') throw new Error(`${spec.name}: ${r.detail}`)
        },
      })),
      { concurrent: true, exitOnError: false, rendererOptions: { collapseErrors: false }, renderer: 'default', fallbackRenderer: 'simple', ...{ processOutput: new ProcessOutput(process.stderr, process.stderr) } } as never,
    )
    await list.run().catch(() => undefined)
    return run
  }
}
