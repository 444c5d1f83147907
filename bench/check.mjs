// Issue 10 target: `labctl trivy check` ≤ 1.5× a bare `ssh trivy-0 true`, same machine, same run, with a
// breakdown of where labctl's time goes: Node start-up, module loading, the ssh2 handshake (and the
// algorithms negotiated), the session/exec start, the remote check script.
// Target: the sandbox's trivy-0 (`labctl sandbox up`); when the sandbox cannot start (e.g. the Trivy
// binary is not built yet) a throw-away local sshd, said so in the output. RUNS=N (default 11).
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { compare, median, timeOnce } from './lib.mjs'
import { startSshd } from './check-sshd.mjs'

const root = join(fileURLToPath(import.meta.url), '..', '..')
const labctl = join(root, 'bin', 'labctl')
const node = existsSync(join(root, '.tools/node/bin/node')) ? join(root, '.tools/node/bin/node') : process.execPath
const runs = Number(process.env.RUNS ?? 11)
const dist = (p) => import(pathToFileURL(join(root, 'dist', p)).href)
if (!existsSync(join(root, 'dist', 'src', 'trivy', 'check.js'))) {
  console.error('bench/check.mjs: run `npm run build` first')
  process.exit(2)
}

const tmp = mkdtempSync(join(tmpdir(), 'labctl-bench-check-'))
const env = { ...process.env, XDG_CONFIG_HOME: join(tmp, 'config'), LABCTL_SANDBOX_DIR: join(tmp, 'sb'), CI: '1' }
let target
let sshd
try {
  // The loopback sandbox: the bare ssh baseline below connects to 127.0.0.1.
  const up = spawnSync(labctl, ['sandbox', 'up', '--loopback', '--json'], { env, encoding: 'utf8', timeout: 600_000 })
  const res = JSON.parse(up.stdout || '{}')
  if (up.status === 0 && res.inventory) {
    target = { what: 'the sandbox host trivy-0 (non-root login, sudo -n)', inventory: res.inventory, labArgs: ['--lab', 'sandbox'], checkStatus: 0 }
  } else {
    sshd = await startSshd()
    const inventory = join(tmp, 'lab.yaml')
    writeFileSync(
      inventory,
      [
        'name: bench',
        'dns: {servers: [127.0.0.1]}',
        'trivy:',
        '  version: 0.74.0',
        '  publicUrl: https://trivy.bench.invalid',
        `  cacheDir: ${sshd.dir}`,
        '  hosts:',
        '    - name: trivy-0',
        '      fqdn: trivy-0.bench.invalid',
        '      address: 127.0.0.1',
        `      ssh: {user: ${sshd.user}, port: ${sshd.port}, identityFile: ${sshd.clientKey}, knownHostsFile: ${sshd.knownHosts}}`,
        '',
      ].join('\n'),
    )
    // No DB in the cache dir: check reports failures (exit 3) after doing all its work.
    target = { what: `a local sshd as ${sshd.user} (sandbox unavailable: ${res.error?.message ?? `exit ${up.status}`})`, inventory, labArgs: ['--config', inventory], checkStatus: 3 }
  }
  const inv = readFileSync(target.inventory, 'utf8')
  const port = /port: (\d+)/.exec(inv)[1]
  const user = /user: ([a-z_][a-z0-9_-]*)/.exec(inv)?.[1] ?? 'root'
  const key = /identityFile: ([^,}\s]+)/.exec(inv)[1]
  const known = /knownHostsFile: ([^,}\s]+)/.exec(inv)[1]
  const sshArgs = ['-F', '/dev/null', '-p', port, '-i', key, '-o', `UserKnownHostsFile=${known}`, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', `${user}@127.0.0.1`]

  // 1. End to end, interleaved.
  const cases = [
    { name: 'node -e 0', fn: () => timeOnce(node, ['-e', '0'], { expectStatus: 0 }) },
    // Everything before the first remote step: Node, oclif, the command's modules, flag parsing; it stops at the missing inventory.
    { name: 'labctl up to run()', fn: () => timeOnce(labctl, ['trivy', 'check', '--config', join(tmp, 'no-such-inventory.yaml')], { env, expectStatus: 2 }) },
    { name: 'node: load ssh2', fn: () => timeOnce(node, ['-e', "require('ssh2')"], { expectStatus: 0, cwd: root }) },
    { name: 'ssh trivy-0 true', fn: () => timeOnce('ssh', [...sshArgs, 'true'], { expectStatus: 0 }) },
    { name: 'labctl trivy check', fn: () => timeOnce(labctl, ['trivy', 'check', ...target.labArgs], { env, expectStatus: target.checkStatus }) },
  ]
  const m = compare(cases, runs)

  // 2. In-process phases over the same SSH layer labctl uses.
  const { Remote } = await dist('src/ssh/index.js')
  const { loadInventory } = await dist('src/inventory/load.js')
  const { hostCheck } = await dist('src/trivy/check.js')
  const loaded = loadInventory({ config: target.inventory })
  const host = loaded.inventory.trivy.hosts[0]
  const phases = { inventory: [], handshake: [], exec: [], script: [] }
  let negotiated = '?'
  for (let i = 0; i <= runs; i++) {
    const i0 = performance.now()
    loadInventory({ config: target.inventory })
    if (i > 0) phases.inventory.push(performance.now() - i0)
    const remote = new Remote({ log: (l) => (l.includes(': kex ') ? (negotiated = l.slice(l.indexOf(': kex ') + 2)) : undefined) })
    try {
      const t0 = performance.now()
      await remote.connect(host)
      const t1 = performance.now()
      await remote.run(host, ['true'], { timeoutMs: 30_000, check: true })
      const t2 = performance.now()
      await hostCheck({ loaded, host, remote, since: '-1h', timeoutMs: 30_000 })
      const t3 = performance.now()
      if (i > 0) {
        phases.handshake.push(t1 - t0)
        phases.exec.push(t2 - t1)
        phases.script.push(t3 - t2 - (t2 - t1))
      }
    } finally {
      await remote.close()
    }
  }
  const verbose = spawnSync('ssh', ['-v', ...sshArgs, 'true'], { encoding: 'utf8' }).stderr
  const pick = (re) => re.exec(verbose)?.[1] ?? '?'
  const openssh = `kex ${pick(/kex: algorithm: (\S+)/)}, host key ${pick(/kex: host key algorithm: (\S+)/)}, cipher ${pick(/server->client cipher: (\S+)/)}`

  const base = m['ssh trivy-0 true']
  const total = m['labctl trivy check']
  const hs = median(phases.handshake)
  const ex = median(phases.exec)
  const sc = median(phases.script)
  const startup = m['node -e 0']
  const framework = m['labctl up to run()'] - startup
  const ssh2Load = m['node: load ssh2'] - startup
  const inventory = median(phases.inventory)
  const rest = total - startup - framework - inventory - ssh2Load - hs - ex - sc
  const row = (name, ms, note = '') => console.log(`  ${name.padEnd(36)} ${ms.toFixed(0).padStart(6)} ms${note ? `  ${note}` : ''}`)
  console.log(`trivy check vs a bare ssh, ${target.what}; medians of ${runs} runs (node ${process.version})`)
  row('ssh trivy-0 true (OpenSSH)', base, openssh)
  row('labctl trivy check', total, `${(total / base).toFixed(2)}× ssh`)
  console.log('  where labctl trivy check spends it:')
  row('  Node start-up (node -e 0)', startup)
  row('  oclif + command modules + flags', framework)
  row('  inventory (read, YAML, schema; warm)', inventory)
  row('  loading ssh2', ssh2Load)
  row('  ssh2 handshake (TCP, kex, host key, auth)', hs, negotiated)
  row('  session + exec start (`true`)', ex)
  row('  remote check script (sudo, df, du, …)', sc)
  row('  the rest (rendering, closing; < 0: overlap)', rest)
  const ratio = total / base
  console.log(`  check ratio ${ratio.toFixed(2)}× (goal ≤ 1.5×: ${ratio <= 1.5 ? 'met' : 'MISSED'})`)
} finally {
  if (sshd) await sshd.stop()
  else spawnSync(labctl, ['sandbox', 'down'], { env, timeout: 120_000 })
  rmSync(tmp, { recursive: true, force: true })
}
