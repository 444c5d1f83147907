// Token rotation as a journaled, resumable, verified procedure across the three places that hold the
// token: the server's EnvironmentFile, the Jenkins Secret Text credential, and the workstation's secrets
// dir. The journal records fingerprints, never the token; the token moves through SFTP and HTTP bodies.
import { appendFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { describeReadError, readBoundedText } from '../fs/read-bounded.js'
import { userInfo } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { LabctlError, UsageError, errorMessage, oneLine } from '../errors.js'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { ScannerHost } from '../inventory/schema.js'
import type { Agent } from 'undici'
import type { Remote } from '../ssh/index.js'
import { updateSecretText } from '../jenkins/client.js'
import { canaryScan } from './api.js'
import { fingerprint, generateToken, readTokenFile, withEnvToken } from './token.js'
import { redactText as redact } from '../redact.js'
import { hostBase, trivyAgent } from './endpoint.js'
import { restartService } from './restart.js'
import { writePrivateFile } from '../private-file.js'

export type RotationState = 'staged' | 'server-switched' | 'jenkins-updated' | 'promoted' | 'rolled-back' | 'failed'
export type JournalStep = { step: string; status: 'done' | 'failed' | 'skipped'; at: string; detail: string }
export type Journal = {
  id: string
  startedAt: string
  operator: string
  oldFingerprint: string
  newFingerprint: string
  hosts: string[]
  state: RotationState
  steps: JournalStep[]
  error?: string
}
export type RotateOptions = {
  loaded: LoadedInventory
  hosts: ScannerHost[]
  /** The run's SSH session. */
  remote: Remote
  /** Finish an interrupted rotation (rotateToken only). */
  resume?: boolean | undefined
  /** New token from a file, or "-" for stdin; default: generated. */
  tokenFile?: string | undefined
  readStdin?: () => string
  rollback: boolean
  create: boolean
  jenkinsTimeoutMs: number
  healthTimeoutMs: number
  signal?: AbortSignal | undefined
  progress?: ((m: string) => void) | undefined
}
export type RotateResult = { journal: Journal; windowNote: string }

const TERMINAL: RotationState[] = ['promoted', 'rolled-back', 'failed']

export function secretsPaths(loaded: LoadedInventory) {
  const dir = inventoryPath(loaded, loaded.inventory.secrets.dir)
  return { dir, token: join(dir, 'token'), pending: join(dir, 'token.pending'), prev: join(dir, 'token.prev'), journal: join(dir, 'rotation.json'), audit: join(dir, 'audit.log') }
}

export function readJournal(loaded: LoadedInventory): Journal | undefined {
  const p = secretsPaths(loaded).journal
  if (!existsSync(p)) return undefined
  try {
    return JSON.parse(readBoundedText(p, 'state')) as Journal
  } catch (err) {
    throw new LabctlError(`the rotation journal ${p} is not readable JSON (${oneLine(errorMessage(err), 120)})`, {
      code: 'BAD_JOURNAL',
      suggestion: `it was edited or truncated: restore it, or move it aside once the servers, Jenkins and ${secretsPaths(loaded).token} are known to agree`,
      cause: err,
    })
  }
}


function saveJournal(loaded: LoadedInventory, j: Journal): void {
  writePrivateFile(secretsPaths(loaded).journal, `${JSON.stringify(j, null, 2)}\n`)
}

/** The secrets dir must be private and, inside a git work tree, ignored by git. */
export async function checkSecretsDir(dir: string): Promise<void> {
  mkdirSync(dir, { recursive: true, mode: 0o700 })
  const mode = statSync(dir).mode & 0o777
  if (mode & 0o077) {
    throw new LabctlError(`${dir} is mode ${mode.toString(8).padStart(4, '0')}: other users could read the token`, { code: 'SECRETS_DIR_OPEN', suggestion: `chmod 700 ${dir}` })
  }
  const inTree = await execa('git', ['-C', dir, 'rev-parse', '--is-inside-work-tree'], { reject: false, timeout: 10_000 })
  if (inTree.exitCode === 0 && String(inTree.stdout).trim() === 'true') {
    const ignored = await execa('git', ['-C', dir, 'check-ignore', '-q', join(dir, 'token')], { reject: false, timeout: 10_000 })
    if (ignored.exitCode !== 0) {
      throw new LabctlError(`${dir} is inside a git work tree and its files are not ignored: the token could be committed`, {
        code: 'SECRETS_NOT_IGNORED',
        suggestion: `add the directory to .gitignore (e.g. "${'secrets/'}"), then rerun`,
      })
    }
  }
}

function newToken(o: RotateOptions): string {
  if (!o.tokenFile) return generateToken()
  const raw = o.tokenFile === '-' ? (o.readStdin ?? (() => readBoundedText(0, 'token')))() : readBoundedText(o.tokenFile, 'token')
  const t = raw.trim()
  if (t.length < 32 || !/^[A-Za-z0-9._~-]+$/.test(t)) {
    throw new UsageError('the new token must be at least 32 URL-safe characters (letters, digits, . _ ~ -) on one line', { suggestion: 'omit --token-file to let labctl generate one' })
  }
  return t
}

function jenkinsApiToken(loaded: LoadedInventory): string | undefined {
  const j = loaded.inventory.jenkins
  if (process.env.LABCTL_JENKINS_API_TOKEN) return process.env.LABCTL_JENKINS_API_TOKEN.trim()
  if (!j?.apiTokenFile) return undefined
  const p = inventoryPath(loaded, j.apiTokenFile)
  try {
    return readBoundedText(p, 'jenkins-api-token').trim()
  } catch (err) {
    throw new LabctlError(`cannot read the Jenkins API token file ${p}: ${describeReadError(err)}`, { code: 'NO_JENKINS_TOKEN', suggestion: 'create it (mode 0600) or set LABCTL_JENKINS_API_TOKEN' })
  }
}

export function rotationPlan(o: Pick<RotateOptions, 'loaded' | 'hosts' | 'rollback'>): string[] {
  const inv = o.loaded.inventory
  const s = secretsPaths(o.loaded)
  return [
    `generate a new token (32 random bytes, URL-safe) and stage it as ${s.pending} (0600)`,
    ...o.hosts.map((h) => `${h.name}: rewrite ${inv.trivy.envFile} (root 0600) over SFTP, restart ${inv.trivy.serviceName}, wait for /healthz, prove new token accepted and old rejected`),
    inv.jenkins ? `Jenkins ${inv.jenkins.url}: update Secret Text ${inv.jenkins.credentialId} in store ${inv.jenkins.store}` : 'Jenkins: not in the inventory (skipped)',
    `promote: ${s.pending} → ${s.token}, previous kept as ${s.prev}; audit line in ${s.audit}`,
    o.rollback ? 'on failure after the server changed: roll the server (and Jenkins) back to the old token and verify it' : 'on failure: stop; finish later with --resume',
  ]
}

export async function rotateToken(o: RotateOptions): Promise<RotateResult> {
  const { loaded } = o
  const resume = o.resume === true
  const inv = loaded.inventory
  const s = secretsPaths(loaded)
  const progress = o.progress ?? (() => {})
  await checkSecretsDir(s.dir)
  if (!existsSync(s.token)) throw new LabctlError(`no current token at ${s.token}`, { code: 'NO_TOKEN', suggestion: 'put the token the servers accept there (0600) before rotating' })
  const oldToken = readTokenFile(s.token).token
  let journal = readJournal(loaded)
  let token: string
  if (resume) {
    if (!journal || TERMINAL.includes(journal.state)) throw new UsageError('there is no interrupted rotation to resume', { suggestion: 'see `labctl trivy rotate-token --status`' })
    if (!existsSync(s.pending)) throw new LabctlError(`the staged token ${s.pending} is missing: cannot resume`, { suggestion: 'roll back with `labctl trivy rotate-token --rollback`' })
    token = readTokenFile(s.pending).token
    if (fingerprint(token) !== journal.newFingerprint) throw new LabctlError('the staged token does not match the journal', { suggestion: 'roll back with `labctl trivy rotate-token --rollback`' })
    progress(`resuming rotation ${journal.id} from state ${journal.state}`)
  } else {
    if (journal && !TERMINAL.includes(journal.state)) {
      throw new UsageError(`rotation ${journal.id} was interrupted in state ${journal.state}`, { suggestion: 'finish it with `--resume`, or undo it with `--rollback`' })
    }
    token = newToken(o)
    if (token === oldToken) throw new UsageError('the new token equals the current one', { suggestion: 'omit --token-file to generate one' })
    journal = {
      id: new Date().toISOString().replace(/[:.]/g, '-'),
      startedAt: new Date().toISOString(),
      operator: process.env.SUDO_USER || userInfo().username,
      oldFingerprint: fingerprint(oldToken),
      newFingerprint: fingerprint(token),
      hosts: o.hosts.map((h) => h.name),
      state: 'staged',
      steps: [],
    }
    // Stage locally first: a full disk or a bad directory fails here, before anything else changed.
    writePrivateFile(s.pending, `${token}\n`)
    journal.steps.push({ step: 'stage', status: 'done', at: new Date().toISOString(), detail: `${s.pending} (${journal.newFingerprint})` })
    try {
      saveJournal(loaded, journal)
    } catch (err) {
      rmSync(s.pending, { force: true })
      throw err
    }
  }
  const j: Journal = journal
  const secrets = [token, oldToken]
  const mark = (step: string, status: JournalStep['status'], detail: string, state?: RotationState): void => {
    j.steps.push({ step, status, at: new Date().toISOString(), detail: redact(detail, secrets) })
    if (state) j.state = state
    saveJournal(loaded, j)
  }
  const agent = trivyAgent(loaded)
  const checkAbort = (): void => {
    if (o.signal?.aborted) throw o.signal.reason ?? new LabctlError('interrupted')
  }

  let touched = false
  // Ctrl-C does not wait for a slow step: the step is abandoned and the rollback (or --resume) takes over.
  const untilAbort = <T>(p: Promise<T>): Promise<T> => {
    const sig = o.signal
    if (!sig) return p
    return Promise.race([
      p,
      new Promise<never>((_, reject) => {
        if (sig.aborted) reject(sig.reason)
        sig.addEventListener('abort', () => reject(sig.reason), { once: true })
      }),
    ])
  }

  try {
    if (j.state === 'staged') {
      checkAbort()
      progress(`server: switching ${o.hosts.map((h) => h.name).join(', ')} to the new token`)
      await untilAbort(onEveryHost(o.hosts, (h) => switchServerToken(o, agent, h, token, { verifyRejected: oldToken, onWrite: () => void (touched = true) })))
      mark('server', 'done', `${o.hosts.map((h) => h.name).join(', ')}: new token accepted, old rejected`, 'server-switched')
    }
    if (j.state === 'server-switched') {
      checkAbort()
      if (inv.jenkins) {
        progress(`jenkins: updating credential ${inv.jenkins.credentialId}`)
        mark('jenkins', 'done', await untilAbort(setJenkinsSecret(o, token, o.create)), 'jenkins-updated')
      } else mark('jenkins', 'skipped', 'no jenkins section in the inventory', 'jenkins-updated')
    }
    if (j.state === 'jenkins-updated') {
      checkAbort()
      progress('promote: the new token becomes current locally')
      if (existsSync(s.token)) renameSync(s.token, s.prev)
      renameSync(s.pending, s.token)
      const line = `${new Date().toISOString()} operator=${j.operator} rotation=${j.id} ${j.oldFingerprint} -> ${j.newFingerprint} hosts=${j.hosts.join(',')} jenkins=${inv.jenkins ? 'updated' : 'skipped'} steps=${j.steps.map((x) => `${x.step}:${x.status}`).join(',')}\n`
      appendFileSync(s.audit, line, { mode: 0o600 })
      mark('promote', 'done', `${s.token} (previous kept as ${s.prev})`, 'promoted')
    }
    return { journal: j, windowNote: 'the server switched before Jenkins was updated: scans with the old token got 401 in between' }
  } catch (err) {
    const why = redact(err instanceof LabctlError ? err.message : errorMessage(err), secrets)
    // From the first env file write on, a server may hold the new token.
    const changed = touched || j.state !== 'staged'
    if (!changed) {
      rmSync(s.pending, { force: true })
      j.error = why
      mark('server', 'failed', why, 'failed')
      throw new LabctlError(`rotation failed before anything changed: ${oneLine(why)}`, {
        code: err instanceof LabctlError ? err.code : 'ROTATION_FAILED',
        suggestion: err instanceof LabctlError && err.suggestion ? err.suggestion : 'fix the cause and rerun; all three places still hold the old token',
      })
    }
    if (!o.rollback) {
      j.error = why
      saveJournal(loaded, j)
      throw new LabctlError(`rotation stopped in state ${j.state}: ${oneLine(why)}`, { code: 'ROTATION_STOPPED', suggestion: 'fix the cause, then `labctl trivy rotate-token --resume` (or `--rollback`)' })
    }
    progress(`rolling back: ${oneLine(why)}`)
    await rollbackTo(o, j, oldToken, agent, mark)
    const interrupted = o.signal?.aborted === true
    throw new LabctlError(`rotation ${interrupted ? 'interrupted' : `failed (${oneLine(why)})`}; rolled back: the servers${inv.jenkins ? ' and Jenkins' : ''} hold the old token again, verified`, {
      code: interrupted ? 'INTERRUPTED' : 'ROTATION_ROLLED_BACK',
      ...(interrupted ? { exitCode: 130 as const } : {}),
      suggestion: interrupted ? 'rerun `labctl trivy rotate-token` when ready' : 'fix the cause, then rerun `labctl trivy rotate-token`',
    })
  } finally {
    await agent.close()
  }
}

type Mark = (step: string, status: JournalStep['status'], detail: string, state?: RotationState) => void

/**
 * Runs `fn` on every host at once and waits until each has ended, then fails with the first failure: on a
 * fleet, a rollback must never start while another host is still in the middle of its switch.
 */
export async function onEveryHost(hosts: ScannerHost[], fn: (h: ScannerHost) => Promise<unknown>): Promise<void> {
  const results = await Promise.allSettled(hosts.map(fn))
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
  if (failed) throw failed.reason
}

/** Everything back to the old token, verified; Jenkins only when this rotation had changed it. */
async function rollbackTo(o: RotateOptions, j: Journal, oldToken: string, agent: Agent, mark: Mark): Promise<void> {
  const s = secretsPaths(o.loaded)
  try {
    await onEveryHost(o.hosts, (h) => switchServerToken(o, agent, h, oldToken, {}))
    mark('rollback-server', 'done', 'old token accepted again')
    if (o.loaded.inventory.jenkins && j.steps.some((x) => x.step === 'jenkins' && x.status === 'done')) {
      mark('rollback-jenkins', 'done', await setJenkinsSecret(o, oldToken, false))
    }
  } catch (err) {
    j.error = `rollback failed: ${errorMessage(err)}`
    mark('rollback', 'failed', j.error)
    throw new LabctlError(`rotation failed and so did the rollback: ${oneLine(errorMessage(err))}`, {
      code: 'ROLLBACK_FAILED',
      suggestion: 'the new token is kept in the secrets dir as token.pending: `labctl trivy rotate-token --resume` or `--rollback` once the cause is fixed',
    })
  }
  rmSync(s.pending, { force: true })
  mark('rollback', 'done', 'all places hold the old token', 'rolled-back')
}

/** Explicit rollback of an interrupted rotation (after a crash or --no-rollback). Idempotent. */
export async function rollbackRotation(o: RotateOptions): Promise<Journal> {
  const j = readJournal(o.loaded)
  if (!j || TERMINAL.includes(j.state)) throw new UsageError('there is no interrupted rotation to roll back', { suggestion: 'see `labctl trivy rotate-token --status`' })
  const s = secretsPaths(o.loaded)
  const oldToken = readTokenFile(s.token).token
  if (fingerprint(oldToken) !== j.oldFingerprint) throw new LabctlError("the current token does not match the journal's old token", { suggestion: 'inspect the secrets dir by hand' })
  const agent = trivyAgent(o.loaded)
  const mark: Mark = (step, status, detail, state) => {
    j.steps.push({ step, status, at: new Date().toISOString(), detail: redact(detail, [oldToken]) })
    if (state) j.state = state
    saveJournal(o.loaded, j)
  }
  try {
    await rollbackTo(o, j, oldToken, agent, mark)
    return j
  } finally {
    await agent.close()
  }
}

/**
 * Puts TOKEN into a host's EnvironmentFile (root 0600, over SFTP), restarts the service, waits until it
 * answers directly and through the edge, and proves the token is accepted (and another one rejected).
 */
async function switchServerToken(
  o: RotateOptions,
  agent: Agent,
  h: ScannerHost,
  to: string,
  opts: { verifyRejected?: string | undefined; onWrite?: () => void },
): Promise<void> {
  const inv = o.loaded.inventory
  const envText = (await o.remote.readFile(h, inv.trivy.envFile, { sudo: true, timeoutMs: 30_000 })).toString('utf8')
  opts.onWrite?.()
  await o.remote.writeFile(h, inv.trivy.envFile, withEnvToken(envText, to), { mode: 0o600, owner: 'root', group: 'root', sudo: true, keepPrevious: false })
  // Restarted and healthy directly and through the edge (HAProxy's health check has to see it come back).
  // No signal: a rollback after Ctrl-C must still be able to restart the service.
  await restartService({ loaded: o.loaded, host: h, remote: o.remote, waitMs: o.healthTimeoutMs })
  const base = hostBase(inv, h)
  const accepted = await canaryScan({ baseUrl: base, token: to, tokenHeader: inv.trivy.tokenHeader, dispatcher: agent, timeoutMs: 30_000 })
  if (accepted.kind !== 'ok') throw new LabctlError(`${h.name} does not accept the token it was just given (${accepted.kind})`, { code: 'TOKEN_NOT_ACCEPTED', suggestion: `check ${inv.trivy.envFile} on ${h.name} and the service log: \`labctl trivy logs --host ${h.name} -n 50\`` })
  if (opts.verifyRejected) {
    const rejected = await canaryScan({ baseUrl: base, token: opts.verifyRejected, tokenHeader: inv.trivy.tokenHeader, dispatcher: agent, timeoutMs: 30_000 })
    if (rejected.kind !== 'unauthorized') throw new LabctlError(`${h.name} still accepts the old token after the restart`, { code: 'OLD_TOKEN_ACCEPTED', suggestion: `check that ${inv.trivy.serviceName} on ${h.name} reads ${inv.trivy.envFile} (its EnvironmentFile) and restarted` })
  }
}

/** Sets the Jenkins Secret Text credential to SECRET through the credentials plugin's REST API. */
async function setJenkinsSecret(o: RotateOptions, secret: string, create: boolean): Promise<string> {
  const inv = o.loaded.inventory
  const jk = inv.jenkins!
  const r = await updateSecretText({
    url: jk.url,
    user: jk.user ?? '',
    apiToken: jenkinsApiToken(o.loaded),
    timeoutMs: o.jenkinsTimeoutMs,
    caFile: jk.caBundle ? inventoryPath(o.loaded, jk.caBundle) : undefined,
    dnsServers: inv.dns.servers,
    store: jk.store as 'system',
    credentialId: jk.credentialId,
    secret,
    create,
  })
  return `${r.action} ${jk.credentialId} in ${jk.store}`
}
