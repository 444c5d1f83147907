// Network faults of the lab network, and a connection lost in the middle of a step: rotate-token, reset-db
// with SSH to trivy-0 cut while their server step runs. Runs on the run's sandbox when it is a lab network,
// else on a private `sandbox up --net` (own config, state and sandbox dirs).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import { readState } from '../../src/sandbox/layout.js'
import { fingerprint } from '../../src/trivy/token.js'
import { LABCTL, labctl, parseJson } from '../helpers.js'

const sb = inject('sandbox')
const sharedIsNet = Boolean(readState(sb.dir)?.net)
const root = mkdtempSync(join(tmpdir(), 'labctl-netfaults-'))
const env: NodeJS.ProcessEnv = sharedIsNet ? {} : { XDG_CONFIG_HOME: join(root, 'config'), XDG_STATE_HOME: join(root, 'state'), LABCTL_SANDBOX_DIR: join(root, 'sb') }
const dir = sharedIsNet ? sb.dir : env.LABCTL_SANDBOX_DIR!
const run = (args: string[], timeoutMs = 120_000) => labctl(args, { env, timeoutMs })
const secretsToken = (): string => readFileSync(join(dir, 'secrets', 'trivy-vm', 'token'), 'utf8').trim()

/** The fingerprint the Jenkins credential holds now (the stand-in logs each change, never the secret). */
function jenkinsFingerprint(): string | undefined {
  const lines = readFileSync(join(dir, 'logs', 'jenkins.log'), 'utf8').split('\n')
  const held = lines.map((l) => /credential system\/trivy-server-token holds (sha256:[0-9a-f]{12})/.exec(l)?.[1]).filter(Boolean)
  return held.at(-1)
}

/** The token the server's env file holds (read through the sandbox's console, not SSH). */
async function serverToken(): Promise<string> {
  const r = await run(['sandbox', 'exec', 'trivy-0', '--json', '--', 'cat', '/etc/trivy/trivy-server.env'])
  const out = parseJson<{ stdout: string }>(String(r.stdout)).stdout
  return (/^TRIVY_TOKEN=(.*)$/m.exec(out)?.[1] ?? '').trim()
}

/** One token in all three places, and it works: validate (scan + auth) passes with the secrets dir's token. */
async function expectOneWorkingToken(): Promise<void> {
  const t = secretsToken()
  // The stand-in flushes its log every 200 ms.
  await new Promise((r) => setTimeout(r, 500))
  expect(jenkinsFingerprint()).toBe(fingerprint(t))
  expect(fingerprint(await serverToken())).toBe(fingerprint(t))
  const v = await run(['trivy', 'validate', '--lab', 'sandbox', '--json', '--timeout', '5000', '--scan-timeout', '20000'])
  expect(v.exitCode, String(v.stdout)).toBe(0)
}

/** Starts a labctl command and cuts SSH to trivy-0 as soon as its progress shows MARK (i.e. mid-step). */
async function cutWhen(args: string[], mark: RegExp, opts: { healAfterMs?: number } = {}): Promise<{ exitCode: number; stdout: string; stderr: string; cutAt: number }> {
  const child = execa(LABCTL, args, { reject: false, env: { ...process.env, NO_COLOR: '1', ...env }, stdin: 'ignore', timeout: 300_000 })
  let stderr = ''
  let cutAt = -1
  let cutting: Promise<unknown> | undefined
  const started = Date.now()
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString()
    if (!cutting && mark.test(stderr)) {
      cutAt = Date.now() - started
      cutting = run(['sandbox', 'break', 'ssh-cut']).then(async (b) => {
        expect(b.exitCode, String(b.stderr)).toBe(0)
        if (opts.healAfterMs !== undefined) {
          await new Promise((r) => setTimeout(r, opts.healAfterMs))
          const h = await run(['sandbox', 'heal'])
          expect(h.exitCode, String(h.stderr)).toBe(0)
        }
      })
    }
  })
  const r = await child
  await cutting
  expect(cutAt, `never saw ${mark} in: ${stderr}`).toBeGreaterThanOrEqual(0)
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr, cutAt }
}

describe('network faults (sandbox up --net)', () => {
  beforeAll(async () => {
    if (sharedIsNet) return
    const up = await run(['sandbox', 'up', '--net'], 240_000)
    expect(up.exitCode, String(up.stderr)).toBe(0)
  }, 300_000)
  afterAll(async () => {
    if (!sharedIsNet) await run(['sandbox', 'down'])
    rmSync(root, { recursive: true, force: true })
  }, 180_000)

  it('a network fault on a loopback sandbox is refused with one line, exit 1', async () => {
    // The run's sandbox when it is the loopback one, else a private `sandbox up --loopback`.
    const lroot = mkdtempSync(join(tmpdir(), 'labctl-netfaults-lo-'))
    const lenv: NodeJS.ProcessEnv | undefined = sharedIsNet ? { XDG_CONFIG_HOME: join(lroot, 'config'), XDG_STATE_HOME: join(lroot, 'state'), LABCTL_SANDBOX_DIR: join(lroot, 'sb') } : undefined
    try {
      if (lenv) {
        const up = await labctl(['sandbox', 'up', '--loopback'], { env: lenv, timeoutMs: 240_000 })
        expect(up.exitCode, String(up.stderr)).toBe(0)
      }
      const r = await labctl(['sandbox', 'break', 'firewall-closed'], lenv ? { env: lenv } : {})
      expect(r.exitCode).toBe(1)
      expect(String(r.stderr)).toMatch(/^labctl: error: fault firewall-closed needs the lab network; this sandbox runs on 127\.0\.0\.1\n\s+next: .*sandbox up --net/)
    } finally {
      if (lenv) await labctl(['sandbox', 'down'], { env: lenv, timeoutMs: 120_000 })
      rmSync(lroot, { recursive: true, force: true })
    }
  }, 300_000)

  it('bad arguments: link-down without a node, a node for another fault, --after out of bounds (exit 2)', async () => {
    for (const args of [['link-down'], ['link-down', 'nowhere'], ['edge-down', 'edge'], ['ssh-cut', '--after', '11m'], ['ssh-cut', '--after', 'soon'], ['dns-down', '--after', '1s']]) {
      const r = await run(['sandbox', 'break', ...args])
      expect(r.exitCode, `${args.join(' ')}: ${String(r.stderr)}`).toBe(2)
      expect(String(r.stderr).trim().split('\n').length).toBeLessThanOrEqual(2)
    }
  })

  it('each fault is what it says: who answers and who does not, and heal restores it', async () => {
    const status = async () => parseJson<{ network: { nodes: Array<{ name: string; address: string; namespace: string }> } }>(String((await run(['sandbox', 'status', '--json'])).stdout))
    const net = (await status()).network
    const addr = Object.fromEntries(net.nodes.map((n) => [n.name, n.address])) as Record<string, string>
    const validate = async () => {
      const r = await run(['trivy', 'validate', '--lab', 'sandbox', '--json', '--only', 'dns,tls,healthz', '--timeout', '3000'])
      const checks = parseJson<{ checks: Array<{ name: string; status: string; detail: string }> }>(String(r.stdout)).checks
      return { code: r.exitCode, failed: checks.filter((c) => c.status === 'fail').map((c) => `${c.name}: ${c.detail}`).join('; '), get: (name: string) => checks.find((c) => c.name === name) }
    }
    const breakHeal = async (fault: string[], see: () => Promise<void>) => {
      const b = await run(['sandbox', 'break', ...fault])
      expect(b.exitCode, String(b.stderr)).toBe(0)
      try {
        await see()
      } finally {
        const h = await run(['sandbox', 'heal'])
        expect(h.exitCode, String(h.stderr)).toBe(0)
      }
      const after = await validate()
      expect(after.code, `after heal of ${fault.join(' ')}: ${after.failed}`).toBe(0)
    }
    await breakHeal(['link-down', 'trivy-0'], async () => {
      const v = await validate()
      expect(v.get('healthz direct')?.detail).toMatch(/no TCP connection|host unreachable/)
      const st = await run(['trivy', 'status', '--lab', 'sandbox', '--timeout', '3000'])
      expect(st.exitCode).toBe(1)
      expect(String(st.stderr)).toMatch(new RegExp(`no SSH answer from ${addr['trivy-0']!.replaceAll('.', '\\.')}:22`))
    })
    await breakHeal(['edge-down'], async () => {
      const v = await validate()
      expect(v.get('tls trivy.apps.sandbox.lab.test')?.detail).toMatch(/^connection refused/)
      expect(v.get('healthz direct')?.status).toBe('pass')
    })
    await breakHeal(['link-down', 'edge'], async () => {
      const v = await validate()
      expect(v.get('tls trivy.apps.sandbox.lab.test')?.detail).toMatch(/no TCP connection|host unreachable/)
      expect(v.get('healthz direct')?.status).toBe('pass')
    })
    await breakHeal(['dns-down'], async () => {
      const v = await validate()
      expect(v.get('dns trivy.apps.sandbox.lab.test')?.detail).toMatch(/DNS timeout/)
    })
    await breakHeal(['firewall-closed'], async () => {
      const v = await validate()
      expect(v.get('healthz via HAProxy')?.detail).toMatch(/backend down: HAProxy answered 503/)
      expect(v.get('healthz direct')?.status).toBe('pass')
    })
    const armed = Date.now()
    await breakHeal(['ssh-cut', '--after', '10s'], async () => {
      // Before the timer fires SSH still works; after it, it does not, while scans still do.
      const early = await run(['trivy', 'status', '--lab', 'sandbox', '--timeout', '3000'])
      expect(Date.now() - armed, 'the check before the cut came too late to mean anything').toBeLessThan(9000)
      expect(early.exitCode, String(early.stderr)).toBe(0)
      await new Promise((r) => setTimeout(r, Math.max(0, 10_500 - (Date.now() - armed))))
      const late = await run(['trivy', 'status', '--lab', 'sandbox', '--timeout', '3000'])
      expect(late.exitCode).toBe(1)
      expect(String(late.stderr)).toMatch(/no SSH answer/)
      expect((await validate()).code).toBe(0)
    })
  }, 300_000)

  it('rotate-token with SSH cut during the server step, back within seconds: one working token everywhere', async () => {
    // (progress lines go to stderr without --json only)
    const r = await cutWhen(['trivy', 'rotate-token', '--lab', 'sandbox', '--yes'], /server: switching/, { healAfterMs: 3000 })
    // Either the step rode out the hiccup (TCP retransmits) and the rotation finished, or it failed and rolled back.
    expect([0, 1], r.stderr).toContain(r.exitCode)
    const st = parseJson<{ journal?: { state: string } }>(String((await run(['trivy', 'rotate-token', '--lab', 'sandbox', '--status', '--json'])).stdout))
    expect(['promoted', 'rolled-back'], JSON.stringify(st)).toContain(st.journal?.state)
    await expectOneWorkingToken()
  }, 300_000)

  it('rotate-token with SSH cut during the server step until heal: the rollback cannot reach the host; after heal, --resume finishes with one working token', async () => {
    const before = secretsToken()
    const r = await cutWhen(['trivy', 'rotate-token', '--lab', 'sandbox', '--yes'], /server: switching/)
    expect(r.exitCode, r.stderr).toBe(1)
    expect(r.stderr).toMatch(/rollback|rotation stopped/)
    const h = await run(['sandbox', 'heal'])
    expect(h.exitCode, String(h.stderr)).toBe(0)
    const resumed = await run(['trivy', 'rotate-token', '--lab', 'sandbox', '--resume', '--yes', '--json'])
    expect(resumed.exitCode, String(resumed.stderr)).toBe(0)
    expect(parseJson<{ journal: { state: string } }>(String(resumed.stdout)).journal.state).toBe('promoted')
    expect(secretsToken()).not.toBe(before)
    await expectOneWorkingToken()
  }, 400_000)

  it('reset-db with SSH cut after the service stopped: fails; after heal, a rerun passes', async () => {
    const r = await cutWhen(['trivy', 'reset-db', '--lab', 'sandbox', '--yes', '--wait', '60'], /trivy-0: (stop service|move DB aside)/)
    expect(r.exitCode, r.stderr).toBe(1)
    const h = await run(['sandbox', 'heal'])
    expect(h.exitCode, String(h.stderr)).toBe(0)
    const again = await run(['trivy', 'reset-db', '--lab', 'sandbox', '--yes', '--wait', '60'], 240_000)
    expect(again.exitCode, String(again.stderr)).toBe(0)
    const v = await run(['trivy', 'validate', '--lab', 'sandbox', '--timeout', '5000', '--scan-timeout', '20000'])
    expect(v.exitCode, String(v.stdout)).toBe(0)
  }, 400_000)
})

describe('trivy install cut half-way (sandbox up --net --bare)', () => {
  // Made by the test itself (a describe filtered out with -t runs no hooks, so it would leave the dir behind).
  let bareRoot: string | undefined
  let benv: NodeJS.ProcessEnv = {}
  const brun = (args: string[], timeoutMs = 240_000) => labctl(args, { env: benv, timeoutMs })
  afterAll(async () => {
    if (!bareRoot) return
    await brun(['sandbox', 'down'])
    rmSync(bareRoot, { recursive: true, force: true })
  }, 180_000)

  it('SSH cut while install writes the env file and the unit: fails; after heal, the rerun installs and validates; then nothing left to change', async () => {
    bareRoot = mkdtempSync(join(tmpdir(), 'labctl-netfaults-bare-'))
    benv = { XDG_CONFIG_HOME: join(bareRoot, 'config'), XDG_STATE_HOME: join(bareRoot, 'state'), LABCTL_SANDBOX_DIR: join(bareRoot, 'sb') }
    const up = await brun(['sandbox', 'up', '--net', '--bare'])
    expect(up.exitCode, String(up.stderr)).toBe(0)
    const child = execa(LABCTL, ['trivy', 'install', '--lab', 'sandbox', '--yes'], { reject: false, env: { ...process.env, NO_COLOR: '1', ...benv }, stdin: 'ignore', timeout: 300_000 })
    let stderr = ''
    let cutting: Promise<unknown> | undefined
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString()
      if (!cutting && /trivy-0: env-file/.test(stderr)) cutting = brun(['sandbox', 'break', 'ssh-cut'])
    })
    const first = await child
    expect(cutting, `never reached env-file: ${stderr}`).toBeDefined()
    expect(((await cutting) as { exitCode: number }).exitCode).toBe(0)
    expect(first.exitCode, stderr).toBe(1)
    const h = await brun(['sandbox', 'heal'])
    expect(h.exitCode, String(h.stderr)).toBe(0)
    const again = await brun(['trivy', 'install', '--lab', 'sandbox', '--yes'])
    expect(again.exitCode, `${String(again.stdout)}\n${String(again.stderr)}`).toBe(0)
    const dry = await brun(['trivy', 'install', '--lab', 'sandbox', '--dry-run', '--json'])
    expect(dry.exitCode, String(dry.stderr)).toBe(0)
    const plan = parseJson<{ hosts: Array<{ plan: Array<{ id: string; action: string }> }> }>(String(dry.stdout)).hosts[0]!.plan
    expect(plan.filter((r) => r.action === 'create' || r.action === 'update').map((r) => r.id)).toEqual([])
  }, 600_000)
})
