// Reads a runbook file and rejects what is wrong with it as FILE:LINE:COL: KEY: what is wrong, the way
// the inventory loader does (the yaml library's LineCounter maps a schema path back to its line).
import { createLocator, duplicateKeys, keyPath, MAX_LISTED_PROBLEMS, problemDetails } from '../yaml-locate.js'
import { createHash } from 'node:crypto'
import { basename, extname } from 'node:path'
import { isScalar, LineCounter, parseDocument, type Document } from 'yaml'
import type { z } from 'zod'
import { errorMessage, oneLine, UsageError } from '../errors.js'
import { splitCommand } from './argv.js'
import { patternProblem } from './pattern.js'
import { readOnlyProblem } from './readonly.js'
import { RunbookSchema, STEP_TYPES, type Condition, type LoadedRunbook, type Runbook } from './schema.js'
import { describeReadError, readBoundedText } from '../fs/read-bounded.js'

export type RunbookProblem = { file: string; line: number; column: number; key: string; message: string }

export const RUNBOOK_FIX_HINT = 'fix the runbook file (the format is described in runbooks/README.md), then run `labctl runbook show NAME`'

const fmt = (p: RunbookProblem): string => `${p.file}:${p.line}:${p.column}: ${p.key ? `${p.key}: ` : ''}${p.message}`

/** A runbook file that cannot be used: exit 2, every problem with its file and line. */
export class RunbookError extends UsageError {
  readonly problems: RunbookProblem[]
  constructor(problems: RunbookProblem[], suggestion = RUNBOOK_FIX_HINT) {
    const first = problems[0]!
    const more = problems.length > 1 ? ` (+${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : ''
    super(`${fmt(first)}${more}`, { code: 'BAD_RUNBOOK', suggestion })
    this.problems = problems
    this.details = problemDetails(problems.slice(0, MAX_LISTED_PROBLEMS).map(fmt), problems.length)
  }
}

function describeIssue(issue: z.core.$ZodIssue, doc: Document): { message: string; path: PropertyKey[] } {
  const path = [...issue.path]
  // An unknown or missing step type: zod reports the discriminator.
  if (issue.code === 'invalid_union' && (issue as { discriminator?: string }).discriminator === 'type') {
    const value = doc.getIn(path as unknown[])
    if (value === undefined) return { message: `required key is missing: every step needs a type (${STEP_TYPES.join(', ')})`, path: path.slice(0, -1) }
    return { message: `unknown step type "${String(value)}" (expected one of: ${STEP_TYPES.join(', ')})`, path }
  }
  if (issue.code === 'invalid_union') {
    if (!doc.hasIn(path as unknown[])) return { message: 'required key is missing', path }
    const alts = [
      ...new Set(
        ((issue as { errors?: z.core.$ZodIssue[][] }).errors ?? []).map((branch) => {
          const i = branch[0]
          if (!i) return 'something else'
          if (i.code === 'invalid_type') return i.expected === 'object' ? 'a mapping' : i.expected === 'array' ? 'a list' : `a ${i.expected}`
          if (i.code === 'invalid_value') return (i.values as unknown[]).map((v) => JSON.stringify(v)).join(' or ')
          return i.message
        }),
      ),
    ]
    return { message: `wrong value: expected ${alts.join(', or ')}`, path }
  }
  if (issue.code === 'invalid_type') {
    const present = doc.hasIn(path as unknown[])
    return { message: present ? `wrong type: expected ${issue.expected}` : `required key is missing (expected ${issue.expected})`, path }
  }
  if (issue.code === 'invalid_value' && 'values' in issue) {
    return { message: `must be one of: ${(issue.values as unknown[]).map(String).join(', ')}`, path }
  }
  return { message: issue.message, path }
}

/** Parses and checks one runbook document; throws a RunbookError listing every problem. */
export function parseRunbook(text: string, file: string): Runbook {
  const lc = new LineCounter()
  // uniqueKeys is checked in linear time below (yaml's own check is quadratic in the number of keys).
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false })
  const loc = createLocator(doc, lc)
  const problem = (path: PropertyKey[], message: string, extraKey?: string, atValue = true): RunbookProblem => ({
    file,
    ...loc(path, extraKey, atValue),
    key: keyPath(extraKey === undefined ? path : [...path, extraKey]),
    message,
  })
  if (doc.errors.length > 0) {
    throw new RunbookError(
      doc.errors.map((e) => {
        const pos = lc.linePos(e.pos[0])
        return { file, line: pos.line, column: pos.col, key: '', message: `YAML syntax: ${e.message.split('\n')[0]}` }
      }),
    )
  }
  const dups = duplicateKeys(doc)
  if (dups.length > 0) {
    throw new RunbookError(dups.map((d) => ({ file, ...(({ line, col }) => ({ line, column: col }))(lc.linePos(d.offset)), key: '', message: `YAML: map keys must be unique ("${d.key}" is repeated)` })))
  }
  let data: unknown
  try {
    // The yaml library refuses an alias bomb (a few lines that expand to millions of nodes) here.
    data = doc.toJS({ maxAliasCount: 100 })
  } catch (err) {
    throw new RunbookError([{ file, line: 1, column: 1, key: '', message: `cannot read the YAML: ${oneLine(errorMessage(err), 200)}` }])
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new RunbookError([{ file, line: 1, column: 1, key: '', message: 'a runbook must be a YAML mapping (name:, title:, steps: …)' }])
  }
  const parsed = RunbookSchema.safeParse(data)
  if (!parsed.success) {
    const problems: RunbookProblem[] = []
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        for (const k of issue.keys) problems.push(problem([...issue.path], 'unknown key', k, false))
        continue
      }
      const d = describeIssue(issue, doc)
      problems.push(problem(d.path, d.message))
    }
    throw new RunbookError(sortProblems(problems))
  }
  const rb = parsed.data
  /** A bad pattern: where in the pattern, when the scalar is written on one line as it reads. */
  const patternAt = (path: PropertyKey[], message: string, index: number): RunbookProblem => {
    const p = problem(path, message)
    const node = doc.getIn(path as unknown[], true)
    if (isScalar(node) && node.range && typeof node.value === 'string') {
      const q = node.type === 'QUOTE_SINGLE' || node.type === 'QUOTE_DOUBLE' ? 1 : 0
      if (text.slice(node.range[0] + q, node.range[0] + q + node.value.length) === node.value) {
        const pos = lc.linePos(node.range[0] + q + Math.min(index, node.value.length))
        return { ...p, line: pos.line, column: pos.col }
      }
    }
    return p
  }
  const problems = [...checkReferences(rb, problem), ...checkPatterns(rb, patternAt)]
  const stem = basename(file, extname(file))
  if (stem !== rb.name && !file.startsWith('<')) problems.push(problem(['name'], `"${rb.name}" differs from the file name "${stem}": name the file ${rb.name}.yaml`))
  if (problems.length) throw new RunbookError(sortProblems(problems))
  return rb
}

function sortProblems(p: RunbookProblem[]): RunbookProblem[] {
  return p.sort((a, b) => a.line - b.line || a.column - b.column)
}

/** Every goto/next target, cause and step reference must exist; ids must be unique; commands must parse. */
function checkReferences(rb: Runbook, problem: (path: PropertyKey[], message: string) => RunbookProblem): RunbookProblem[] {
  const out: RunbookProblem[] = []
  const ids = new Map<string, number>()
  rb.steps.forEach((s, i) => {
    if (ids.has(s.id)) out.push(problem(['steps', i, 'id'], `duplicate step id "${s.id}" (also steps[${ids.get(s.id)}])`))
    else ids.set(s.id, i)
  })
  const target = (t: string | undefined, path: PropertyKey[]): void => {
    if (t !== undefined && t !== 'end' && !ids.has(t)) out.push(problem(path, `no step "${t}" in this runbook (steps: ${[...ids.keys()].join(', ')}, or end)`))
  }
  const cause = (c: string, path: PropertyKey[]): void => {
    if (!(c in rb.causes)) out.push(problem(path, `cause "${c}" is not listed under causes: (${Object.keys(rb.causes).join(', ')})`))
  }
  const stepRef = (id: string, path: PropertyKey[], at: number): void => {
    const j = ids.get(id)
    if (j === undefined) out.push(problem(path, `no step "${id}" in this runbook`))
    else if (rb.steps[j]!.type !== 'check' && rb.steps[j]!.type !== 'action') out.push(problem(path, `step "${id}" is a ${rb.steps[j]!.type} step: conditions read check and action steps`))
    else if (j === at) out.push(problem(path, `a step cannot read its own result`))
  }
  const conditions = (cs: Condition[], path: PropertyKey[], at: number, self?: string): void => {
    cs.forEach((c, k) => {
      const p = [...path, k]
      const ref = c.finding?.step ?? c.exit?.step ?? c.value?.step ?? c.outcome?.step
      const key = c.finding ? 'finding' : c.exit ? 'exit' : c.value ? 'value' : c.outcome ? 'outcome' : undefined
      if (ref !== undefined && key && ref !== self) stepRef(ref, [...p, key, 'step'], at)
      if (c.any) conditions(c.any, [...p, 'any'], at, self)
      if (c.all) conditions(c.all, [...p, 'all'], at, self)
      if (c.not) conditions([c.not], [...p, 'not'], at, self)
    })
  }
  rb.steps.forEach((s, i) => {
    target(s.next, ['steps', i, 'next'])
    if (typeof s.on_failure === 'object') target(s.on_failure.goto, ['steps', i, 'on_failure', 'goto'])
    if (s.type === 'check' || s.type === 'action') {
      try {
        const argv = splitCommand(s.run)
        if (argv.length === 0) out.push(problem(['steps', i, 'run'], 'no command'))
        else if (argv[0]!.startsWith('-')) out.push(problem(['steps', i, 'run'], `starts with a flag ("${argv[0]}"): give the labctl command, e.g. trivy validate`))
        else if (s.type === 'check') {
          const why = readOnlyProblem(argv)
          if (why) out.push(problem(['steps', i, 'run'], why))
        }
      } catch (err) {
        out.push(problem(['steps', i, 'run'], (err as Error).message))
      }
    }
    if (s.type === 'check' && s.retry?.while) conditions(s.retry.while, ['steps', i, 'retry', 'while'], -1, s.id)
    if (s.type === 'diagnosis') {
      s.cases.forEach((c, k) => {
        cause(c.cause, ['steps', i, 'cases', k, 'cause'])
        target(c.goto, ['steps', i, 'cases', k, 'goto'])
        conditions(c.when, ['steps', i, 'cases', k, 'when'], i)
      })
      if (s.otherwise) {
        if (s.otherwise.cause !== undefined) cause(s.otherwise.cause, ['steps', i, 'otherwise', 'cause'])
        target(s.otherwise.goto, ['steps', i, 'otherwise', 'goto'])
      }
    }
  })
  rb.drills.forEach((d, i) => {
    for (const c of Array.isArray(d.cause) ? d.cause : [d.cause]) cause(c, ['drills', i, 'cause'])
  })
  return out
}

/** Every pattern (finding name/detail, value matches) must compile to a linear-time matcher. */
function checkPatterns(rb: Runbook, at: (path: PropertyKey[], message: string, index: number) => RunbookProblem): RunbookProblem[] {
  const out: RunbookProblem[] = []
  const check = (source: string | undefined, path: PropertyKey[]): void => {
    if (source === undefined) return
    const err = patternProblem(source)
    if (err) out.push(at(path, `not a usable pattern: ${err.message} (at character ${err.index + 1})`, err.index))
  }
  const one = (c: Condition, p: PropertyKey[]): void => {
    if (c.finding) {
      check(c.finding.name, [...p, 'finding', 'name'])
      check(c.finding.detail, [...p, 'finding', 'detail'])
    }
    if (c.value) check(c.value.matches, [...p, 'value', 'matches'])
    if (c.any) walk(c.any, [...p, 'any'])
    if (c.all) walk(c.all, [...p, 'all'])
    if (c.not) one(c.not, [...p, 'not'])
  }
  const walk = (cs: Condition[], path: PropertyKey[]): void => cs.forEach((c, k) => one(c, [...path, k]))
  rb.steps.forEach((s, i) => {
    if (s.type === 'check' && s.retry?.while) walk(s.retry.while, ['steps', i, 'retry', 'while'])
    if (s.type === 'diagnosis') s.cases.forEach((c, k) => walk(c.when, ['steps', i, 'cases', k, 'when']))
  })
  return out
}

/** Reads and parses a runbook file. */
export function loadRunbookFile(file: string, source: LoadedRunbook['source']): LoadedRunbook {
  let text: string
  try {
    text = readBoundedText(file, 'runbook')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new RunbookError([{ file, line: 0, column: 0, key: '', message: `cannot read the runbook: ${code === 'ENOENT' ? 'no such file' : describeReadError(err)}` }], 'check the path, or see `labctl runbook list`')
  }
  return { runbook: parseRunbook(text, file), file, sha256: createHash('sha256').update(text).digest('hex'), source }
}
