import { Flags } from '@oclif/core'
import { LabctlCommand, describe } from '../_base.js'
import { hostFlag, sshFlags } from '../_flags.js'
import { inventoryPath, selectHosts } from '../../src/inventory/load.js'
import { UsageError } from '../../src/errors.js'
import { createProbes } from '../../src/exporter/probes.js'
import { DEFAULT_LISTEN, parseListen, startExporter } from '../../src/exporter/server.js'
import { EXPORTER_UNIT_DEFAULTS, renderExporterUnit } from '../../src/exporter/systemd.js'
import { loadToken } from '../../src/trivy/token.js'

export type ExporterResult = { lab: string; listen: string; url?: string; unit?: string; stoppedBy?: string }

export default class TrivyExporter extends LabctlCommand<ExporterResult> {
  static override summary = 'Serve Prometheus metrics of the scanner: canary, 401 probe, /healthz, version pin, DB freshness, TLS expiry, disk.'
  static override description = describe(
    `A long-running HTTP service. Probes run on their own schedule and are cached, so scrapes never multiply
scans: every --interval, per scanner host (its debugUrl) and for the edge (the public URL), a canary scan
with the token, the no-token and wrong-token 401 probes, /healthz, /version (version pin, DB UpdatedAt,
NextUpdate) and, for the edge, the TLS certificate; every --ssh-interval, over SSH, the unit state,
restarts, the cache filesystem and the cache size. Each probe has a deadline; a slow host delays nobody.
  GET /metrics                             every target, from the cache
  GET /probe?target=NAME[&module=http|ssh] one target, run now unless a run finished < --probe-min-age ago
Metric names are those of \`trivy check --prometheus\`; alert rules: monitoring/labctl-trivy.rules.yml.
SIGTERM or SIGINT stops it cleanly. The token (--token-file, TRIVY_TOKEN or the secrets dir) never appears
in metrics, logs or answers. --systemd prints a hardened unit running it under its own user instead.`,
  )
  static override examples = [
    '<%= config.bin %> trivy exporter --lab sandbox',
    '<%= config.bin %> trivy exporter --listen :9934 --interval 60 --ssh-interval 300',
    '<%= config.bin %> trivy exporter --systemd --listen 10.0.0.20:9934 > labctl-trivy-exporter.service',
  ]
  static override flags = {
    listen: Flags.string({ summary: 'HOST:PORT to serve on (":PORT" for every address).', default: DEFAULT_LISTEN, env: 'LABCTL_EXPORTER_LISTEN' }),
    interval: Flags.integer({ summary: 'Seconds between HTTP probes (canary, 401, healthz, version, TLS) of each target.', default: 60, min: 1, max: 86_400 }),
    'ssh-interval': Flags.integer({ summary: 'Seconds between SSH probes (unit, restarts, disk, cache) of each host.', default: 300, min: 5, max: 86_400 }),
    timeout: Flags.integer({ summary: 'Deadline of each HTTP request of a probe, in milliseconds.', default: 10_000, min: 100, max: 300_000 }),
    'ssh-timeout': Flags.integer({ summary: 'Deadline of each remote command of the SSH probe, in milliseconds.', default: 30_000, min: 100, max: 300_000 }),
    'probe-min-age': Flags.integer({ summary: 'Seconds: /probe reuses a result younger than this instead of probing again.', default: 10, min: 0, max: 86_400 }),
    'no-ssh': Flags.boolean({ summary: 'HTTP probes only (no SSH access from this machine).' }),
    host: hostFlag('Only this scanner host (name or FQDN); default all. The edge is always probed.'),
    'accept-new-host-key': sshFlags['accept-new-host-key'],
    'token-file': Flags.string({ summary: 'Read the token from this file (0600/0400).', env: 'LABCTL_TOKEN_FILE' }),
    insecure: Flags.boolean({ summary: 'Allow sending the token over plain HTTP to a non-loopback debugUrl.' }),
    systemd: Flags.boolean({ summary: 'Print a systemd unit running this exporter (own user, hardened) and exit.' }),
    'unit-user': Flags.string({ summary: 'With --systemd: the unprivileged user the exporter runs as.', default: EXPORTER_UNIT_DEFAULTS.user }),
    'labctl-bin': Flags.string({ summary: 'With --systemd: where labctl is installed on the monitoring host.', default: EXPORTER_UNIT_DEFAULTS.labctlBin }),
    'config-dir': Flags.string({ summary: 'With --systemd: directory holding lab.yaml, the token file and the SSH key.', default: EXPORTER_UNIT_DEFAULTS.configDir }),
  }

  async run(): Promise<ExporterResult> {
    const { flags } = await this.parse(TrivyExporter)
    parseListen(flags.listen)
    const loaded = this.loadInventory(flags)
    const inv = loaded.inventory
    if (flags.systemd) {
      const args: string[] = []
      if (flags.interval !== 60) args.push('--interval', String(flags.interval))
      if (flags['ssh-interval'] !== 300) args.push('--ssh-interval', String(flags['ssh-interval']))
      if (flags.timeout !== 10_000) args.push('--timeout', String(flags.timeout))
      if (flags['ssh-timeout'] !== 30_000) args.push('--ssh-timeout', String(flags['ssh-timeout']))
      if (flags['probe-min-age'] !== 10) args.push('--probe-min-age', String(flags['probe-min-age']))
      if (flags['no-ssh']) args.push('--no-ssh')
      if (flags.host) args.push('--host', flags.host)
      const unit = renderExporterUnit({ inventory: inv, listen: flags.listen, args, user: flags['unit-user'], labctlBin: flags['labctl-bin'], configDir: flags['config-dir'] })
      if (!this.jsonEnabled()) process.stdout.write(unit)
      return { lab: inv.name, listen: flags.listen, unit }
    }
    if (flags['token-file'] === '-') throw new UsageError('--token-file - (stdin) is not supported by a long-running service', { suggestion: 'pass a file (mode 0600) or set TRIVY_TOKEN' })
    const hosts = selectHosts(inv, flags.host)
    const src = loadToken({ tokenFile: flags['token-file'], secretsDir: inventoryPath(loaded, inv.secrets.dir) })
    const log = (line: string): void => void process.stderr.write(`labctl-exporter ${new Date().toISOString()} ${line}\n`)
    for (const w of src.warnings) log(`warning: ${w}`)
    const backend = await createProbes({
      loaded,
      hosts,
      token: src.token,
      timeoutMs: flags.timeout,
      sshTimeoutMs: flags['ssh-timeout'],
      journalSince: `-${flags['ssh-interval']}s`,
      insecure: flags.insecure,
      ssh: !flags['no-ssh'],
      acceptNewHostKey: flags['accept-new-host-key'],
    })
    let exporter
    try {
      exporter = await startExporter({
        inventory: inv,
        backend,
        listen: flags.listen,
        httpIntervalMs: flags.interval * 1000,
        sshIntervalMs: flags['ssh-interval'] * 1000,
        // The canary is four requests: its run gets four request deadlines, plus one.
        httpTimeoutMs: flags.timeout * 5,
        sshTimeoutMs: flags['ssh-timeout'] * 2 + 5000,
        probeMinAgeMs: flags['probe-min-age'] * 1000,
        log,
      })
    } catch (err) {
      await backend.close()
      throw err
    }
    log(`serving ${exporter.url}/metrics for lab ${inv.name} (targets: ${backend.targets.map((t) => t.name).join(', ')}; HTTP probes every ${flags.interval}s, SSH every ${flags['ssh-interval']}s)`)
    const stoppedBy = await new Promise<string>((resolve) => {
      const onTerm = (): void => resolve('SIGTERM')
      process.once('SIGTERM', onTerm)
      this.abort.signal.addEventListener('abort', () => {
        process.off('SIGTERM', onTerm)
        resolve('SIGINT')
      })
    })
    log(`${stoppedBy}: stopping`)
    await exporter.close()
    log('stopped')
    return { lab: inv.name, listen: flags.listen, url: exporter.url, stoppedBy }
  }
}
