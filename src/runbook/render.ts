// `labctl runbook show`: the runbook as the document an operator reads at 3 am (Markdown).
import { fillTemplate, showCommand, splitCommand } from './argv.js'
import type { Condition, Runbook, Step } from './schema.js'

const list = <T>(v: T | T[]): T[] => (Array.isArray(v) ? v : [v])

export function describeCondition(c: Condition): string {
  if (c.finding) {
    const f = c.finding
    if (f.check === 'error' && !f.name && !f.detail) return `${f.step ? `\`${f.step}\`` : 'a check'} could not run (labctl error)`
    const verb: Record<string, string> = { fail: 'fails', warn: 'warns', pass: 'passes', skip: 'is skipped' }
    const parts = [
      `${f.check ? list(f.check).join('/') : 'a check'} ${list(f.status ?? 'fail').map((s) => verb[s]).join(' or ')}`,
      ...(f.name ? [`name ~ /${f.name}/`] : []),
      ...(f.host ? [`on ${f.host}`] : []),
      ...(f.detail ? [`detail ~ /${f.detail}/`] : []),
    ]
    return `${f.step ? `\`${f.step}\`: ` : ''}${parts.join(', ')}`
  }
  if (c.exit) return `\`${c.exit.step}\` exited ${list(c.exit.code).join(' or ')}`
  if (c.outcome) return `\`${c.outcome.step}\` was ${list(c.outcome.is).join(' or ')}`
  if (c.value) return `\`${c.value.step}\` ${c.value.path} ${c.value.equals !== undefined ? `= ${String(c.value.equals)}` : c.value.matches !== undefined ? `~ /${c.value.matches}/` : 'is set'}`
  if (c.any) return `any of (${c.any.map(describeCondition).join('; ')})`
  if (c.all) return `all of (${c.all.map(describeCondition).join('; ')})`
  if (c.not) return `not (${describeCondition(c.not)})`
  return '?'
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ')

export function renderRunbook(rb: Runbook, opts: { file?: string; vars?: Record<string, string> } = {}): string {
  const vars = opts.vars ?? {}
  const fill = (s: string): string => fillTemplate(s, vars)
  const number = new Map(rb.steps.map((s, i) => [s.id, i + 1]))
  const ref = (id: string | undefined): string => (id === undefined ? 'the next step' : id === 'end' ? 'the end' : `step ${number.get(id)} (\`${id}\`)`)
  const out: string[] = []
  out.push(`# ${rb.name} — ${rb.title}`, '')
  out.push(`**Symptom.** ${fill(rb.symptom).trim()}`, '')
  if (rb.summary) out.push(fill(rb.summary).trim(), '')
  if (rb.seed) out.push(`*Source: ${rb.seed.trim()}*`, '')
  out.push('## Causes', '', '| cause | what it means |', '|---|---|')
  for (const [id, text] of Object.entries(rb.causes)) out.push(`| \`${id}\` | ${cell(fill(text).trim())} |`)
  if (rb.fix) out.push('', '## Fix', '', fill(rb.fix).trim())
  if (rb.prevention) out.push('', '## Prevention', '', fill(rb.prevention).trim())
  out.push('', '## Steps')
  rb.steps.forEach((s, i) => out.push('', ...renderStep(s, i + 1, fill, ref)))
  if (rb.drills.length) {
    out.push('', '## Drills (sandbox)', '', '| fault | the runbook must name | fixes it on its own |', '|---|---|---|')
    for (const d of rb.drills) out.push(`| \`labctl sandbox break ${d.fault}\` | ${list(d.cause).map((c) => `\`${c}\``).join(' or ')} | ${d.recovers ? 'yes: ends with validate passing' : 'no'} |`)
  }
  out.push('', `Run it: \`labctl runbook run ${rb.name}\` (\`--dry-run\` to see the plan, \`--yes\` to run unattended).`)
  if (opts.file) out.push(`File: \`${opts.file}\``)
  return `${out.join('\n')}\n`
}

function renderStep(s: Step, n: number, fill: (s: string) => string, ref: (id: string | undefined) => string): string[] {
  const out: string[] = []
  out.push(`### ${n}. ${fill(s.title)}`, '', `*${s.type}* \`${s.id}\``, '')
  if (s.why) out.push(fill(s.why).trim(), '')
  if (s.type === 'check' || s.type === 'action') {
    const argv = splitCommand(s.run).map(fill)
    out.push('```sh', `labctl ${showCommand(argv)}${s.type === 'action' ? ' --yes' : ''}`, '```', '')
  }
  switch (s.type) {
    case 'check':
      out.push(s.require === 'pass' ? '- Must pass: the run fails here if any check fails.' : '- Records what the checks find (a failing check is evidence, not a failed step).')
      if (s.retry) out.push(`- Retried every ${s.retry.every ?? 2} s for up to ${s.retry.for} s${s.retry.while ? ` while ${s.retry.while.map(describeCondition).join(' and ')}` : ''}.`)
      break
    case 'action':
      out.push(`- Asks first: “${fill(s.confirm ?? 'Run it?')}” (\`--yes\` answers yes).`)
      break
    case 'manual':
      out.push(fill(s.instructions).trim(), '', `- Then confirm: “${fill(s.confirm)}” (an unattended run with \`--yes\` records it as acknowledged).`)
      break
    case 'diagnosis':
      out.push('| when | cause | then |', '|---|---|---|')
      for (const c of s.cases) {
        out.push(`| ${cell(c.when.map(describeCondition).join(' and '))} | **${c.cause}** | ${ref(c.goto ?? s.next)}${c.follow_up ? `; then \`labctl runbook run ${c.follow_up}\`` : ''} |`)
      }
      if (s.otherwise) out.push(`| otherwise | ${s.otherwise.cause ? `**${s.otherwise.cause}**` : '(the cause found before stands)'} | ${ref(s.otherwise.goto ?? s.next)}${s.otherwise.follow_up ? `; then \`labctl runbook run ${s.otherwise.follow_up}\`` : ''} |`)
      break
  }
  if (s.type !== 'diagnosis' && s.next) out.push(`- Then: ${ref(s.next)}.`)
  if (s.on_failure && s.on_failure !== 'stop') out.push(`- If it fails: ${s.on_failure === 'continue' ? 'carry on with the next step' : `go to ${ref(s.on_failure.goto)}`}.`)
  return out
}
