// The evidence transcript of a run, for the incident record: JSON for tools, Markdown for people.
// Everything in it went through redaction first (the state it is made from is redacted).
import { accessSync, constants, mkdirSync, statSync, type Stats } from 'node:fs'
import { dirname } from 'node:path'
import { UsageError } from '../errors.js'
import { writePrivateFile } from '../private-file.js'
import { ensurePrivateDir, type RunState, type StepRecord } from './state.js'

export type Transcript = {
  runbook: string
  title: string
  runId: string
  file: string
  lab: string | null
  host: string | null
  operator: string
  dryRun: boolean
  startedAt: string
  endedAt: string | null
  status: RunState['status']
  cause: { id: string; description: string } | null
  followUp: string | null
  resumes: number
  steps: StepRecord[]
}

export function toTranscript(state: RunState, causes: Record<string, string>): Transcript {
  return {
    runbook: state.runbook,
    title: state.title,
    runId: state.runId,
    file: state.file,
    lab: state.options.lab ?? null,
    host: state.options.host ?? null,
    operator: state.operator,
    dryRun: state.options.dryRun,
    startedAt: state.startedAt,
    endedAt: state.endedAt ?? null,
    status: state.status,
    cause: state.cause ? { id: state.cause, description: causes[state.cause] ?? '' } : null,
    followUp: state.followUp ?? null,
    resumes: state.resumes,
    steps: state.steps,
  }
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ')
const fence = (text: string, lang = ''): string => {
  const ticks = text.includes('```') ? '````' : '```'
  return `${ticks}${lang}\n${text.replace(/\n$/, '')}\n${ticks}`
}

export function transcriptMarkdown(t: Transcript): string {
  const lines: string[] = []
  lines.push(`# Incident record: ${t.runbook} — ${t.title}`, '')
  lines.push('| | |', '|---|---|')
  lines.push(`| run | \`${t.runId}\` |`)
  lines.push(`| runbook | \`${cell(t.file)}\` |`)
  if (t.lab) lines.push(`| lab | ${cell(t.lab)} |`)
  if (t.host) lines.push(`| host | ${cell(t.host)} |`)
  lines.push(`| operator | ${cell(t.operator)} |`)
  lines.push(`| started | ${t.startedAt} |`)
  lines.push(`| ended | ${t.endedAt ?? '(still running)'} |`)
  lines.push(`| status | **${t.status}**${t.dryRun ? ' (dry run: no action was taken)' : ''}${t.resumes ? ` (resumed ${t.resumes}×)` : ''} |`)
  lines.push(`| cause | ${t.cause ? `**${t.cause.id}** — ${cell(t.cause.description)}` : 'not diagnosed'} |`)
  if (t.followUp) lines.push(`| follow-up | \`labctl runbook run ${t.followUp}\` |`)
  lines.push('', '## Timeline', '', '| time (UTC) | step | type | outcome | what happened |', '|---|---|---|---|---|')
  for (const s of t.steps) lines.push(`| ${s.startedAt.slice(11, 19)} | ${s.id} | ${s.type} | ${s.outcome} | ${cell(s.summary)} |`)
  lines.push('', '## Steps')
  t.steps.forEach((s, i) => {
    lines.push('', `### ${i + 1}. ${s.title} (\`${s.id}\`, ${s.type})`, '')
    lines.push(`- started ${s.startedAt}, took ${(s.durationMs / 1000).toFixed(1)} s`)
    lines.push(`- outcome: **${s.outcome}**${s.confirmedBy ? ` (confirmed by ${s.confirmedBy})` : ''}${s.handler ? `; then ${s.handler}` : ''}`)
    if (s.command) lines.push(`- command: \`labctl ${s.command}\`${s.exitCode !== undefined ? `, exit ${s.exitCode ?? 'none (killed)'}` : ''}${s.attempts && s.attempts > 1 ? `, ${s.attempts} attempts` : ''}`)
    if (s.summary) lines.push(`- ${s.summary}`)
    if (s.cause) lines.push(`- cause: **${s.cause}** — ${s.causeText ?? ''}`)
    if (s.note) lines.push(`- note: ${s.note}`)
    if (s.followUp) lines.push(`- follow-up: \`labctl runbook run ${s.followUp}\``)
    if (s.evidence?.length) {
      lines.push('- evidence:')
      for (const f of s.evidence) lines.push(`  - ${f.step}: ${f.name} — ${f.status}: ${f.detail}`)
    }
    if (s.instructions) lines.push('', s.instructions.replace(/\n$/, ''))
    if (s.output !== undefined) {
      const text = typeof s.output === 'string' ? s.output : JSON.stringify(s.output, null, 2)
      lines.push('', '<details><summary>output</summary>', '', fence(text, typeof s.output === 'string' ? 'text' : 'json'), '', '</details>')
    }
  })
  return `${lines.join('\n')}\n`
}

export function writeTranscript(t: Transcript, paths: { markdown: string; json: string }): void {
  ensurePrivateDir(dirname(paths.markdown))
  ensurePrivateDir(dirname(paths.json))
  writePrivateFile(paths.json, `${JSON.stringify(t, null, 2)}\n`)
  writePrivateFile(paths.markdown, transcriptMarkdown(t))
}

const kindOf = (s: Stats): string => (s.isCharacterDevice() ? 'a character device' : s.isBlockDevice() ? 'a block device' : s.isFIFO() ? 'a FIFO' : s.isSocket() ? 'a socket' : 'a file')
const TRANSCRIPT_HINT = 'give a directory for RUN-ID.md and RUN-ID.json (an existing one, or a new one in an existing directory), e.g. --transcript ./incident-42'

/**
 * Makes sure the --transcript directory can take the transcript before a run starts (nothing runs
 * otherwise): an existing writable directory, or a new one whose parent exists (created, 0700). A
 * device, a file, a missing parent or no permission is a usage error (exit 2) naming the path.
 */
export function prepareTranscriptDir(dir: string): void {
  const fail = (what: string, suggestion = TRANSCRIPT_HINT): never => {
    throw new UsageError(`the transcript directory ${dir} (--transcript) ${what}`, { code: 'BAD_TRANSCRIPT_DIR', suggestion })
  }
  const code = (err: unknown): string | undefined => (err as NodeJS.ErrnoException).code
  let st: Stats | undefined
  try {
    st = statSync(dir)
  } catch (err) {
    if (code(err) === 'ENOTDIR') fail('is under a file, not a directory')
    if (code(err) === 'EACCES') fail('cannot be reached: permission denied')
    if (code(err) !== 'ENOENT') fail(`cannot be used: ${code(err) ?? String(err)}`)
  }
  if (st) {
    if (!st.isDirectory()) fail(`is ${kindOf(st)}, not a directory`)
    try {
      accessSync(dir, constants.W_OK | constants.X_OK)
    } catch {
      fail('is not writable', `give a directory you can write to, or fix its permissions (ls -ld ${dir})`)
    }
    return
  }
  const parent = dirname(dir)
  let pst: Stats | undefined
  try {
    pst = statSync(parent)
  } catch {
    fail(`does not exist, nor does its parent ${parent}`, `create it first (mkdir -p ${dir}), or give an existing directory`)
  }
  if (!pst!.isDirectory()) fail(`cannot be created: its parent ${parent} is ${kindOf(pst!)}`)
  try {
    mkdirSync(dir, { mode: 0o700 })
  } catch (err) {
    fail(`cannot be created: ${code(err) === 'EACCES' ? 'permission denied' : code(err) === 'ENOSPC' ? 'no space left on the device' : (code(err) ?? String(err))}`, `give a directory you can write to, or create it first (mkdir -p ${dir})`)
  }
}
