import { describeReadError, FileReadError, readBoundedText } from '../fs/read-bounded.js'
import { dirname, isAbsolute, join, resolve } from 'node:path'
import { LineCounter, parseDocument, type Document } from 'yaml'
import { createLocator, duplicateKeys, keyPath, MAX_LISTED_PROBLEMS, problemDetails, toJsBounded, YamlAliasBombError } from '../yaml-locate.js'

export { MAX_LISTED_PROBLEMS }
import type { z } from 'zod'
import { UsageError } from '../errors.js'
import { labsDir, xdgDir } from '../paths.js'
import { InventorySchema, type Inventory } from './schema.js'

export type InventorySource = { path: string; how: 'flag' | 'env' | 'lab' | 'default' }
export type LoadedInventory = { inventory: Inventory; path: string; dir: string }

export type Selection = { config?: string | undefined; lab?: string | undefined; env?: NodeJS.ProcessEnv }

/** Which inventory file to read: --config, then LABCTL_CONFIG, then --lab NAME, then the XDG default. */
export function resolveInventoryPath(sel: Selection): InventorySource {
  const env = sel.env ?? process.env
  if (sel.config) return { path: resolve(sel.config), how: 'flag' }
  if (env.LABCTL_CONFIG) return { path: resolve(env.LABCTL_CONFIG), how: 'env' }
  if (sel.lab) {
    if (!/^[A-Za-z0-9._-]+$/.test(sel.lab) || sel.lab.startsWith('.')) {
      throw new UsageError(`--lab "${sel.lab}" is not a lab name`, { code: 'BAD_LAB_NAME', suggestion: 'use letters, digits, . _ - (see `labctl config validate --help`)' })
    }
    return { path: join(labsDir(env), `${sel.lab}.yaml`), how: 'lab' }
  }
  return { path: join(xdgDir('config', env), 'lab.yaml'), how: 'default' }
}

export type InventoryProblem = { file: string; line: number; column: number; key: string; message: string }

export class InventoryError extends UsageError {
  /** The problems found, sorted by position (at most MAX_KEPT_PROBLEMS; `total` counts them all). */
  readonly problems: InventoryProblem[]
  readonly total: number
  constructor(problems: InventoryProblem[], suggestion: string, total = problems.length) {
    const first = problems[0]!
    const more = total > 1 ? ` (+${total - 1} more problem${total > 2 ? 's' : ''})` : ''
    super(`${first.file}:${first.line}:${first.column}: ${first.key ? `${first.key}: ` : ''}${first.message}${more}`, {
      code: 'BAD_INVENTORY',
      suggestion,
    })
    this.problems = problems
    this.total = total
    this.details = problemDetails(
      problems.slice(0, MAX_LISTED_PROBLEMS).map((p) => `${p.file}:${p.line}:${p.column}: ${p.key ? `${p.key}: ` : ''}${p.message}`),
      total,
    )
  }
}

/** Problems kept in memory (and in --json); the count covers the rest. */
const MAX_KEPT_PROBLEMS = 1000

const FIX_HINT = 'fix the inventory (see README "Inventory reference"; schema/inventory.schema.json helps in editors), then run `labctl config validate`'

function fail(problems: InventoryProblem[]): never {
  problems.sort((a, b) => a.line - b.line || a.column - b.column)
  throw new InventoryError(problems.slice(0, MAX_KEPT_PROBLEMS), FIX_HINT, problems.length)
}

export function parseInventory(text: string, file: string): Inventory {
  const lc = new LineCounter()
  // uniqueKeys is checked below in linear time (yaml's own check is quadratic in the number of keys).
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: false })
  const at = (offset: number): { line: number; column: number } => {
    const pos = lc.linePos(offset)
    return { line: pos.line, column: pos.col }
  }
  if (doc.errors.length > 0) {
    fail(doc.errors.map((e) => ({ file, ...at(e.pos[0]), key: '', message: `YAML syntax: ${e.message.split('\n')[0]}` })))
  }
  const dups = duplicateKeys(doc)
  if (dups.length > 0) fail(dups.map((d) => ({ file, ...at(d.offset), key: '', message: `YAML: map keys must be unique ("${d.key}" is repeated)` })))
  let data: unknown
  try {
    data = toJsBounded(doc)
  } catch (err) {
    if (err instanceof YamlAliasBombError) fail([{ file, line: 1, column: 1, key: '', message: err.message }])
    throw err
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    fail([{ file, line: 1, column: 1, key: '', message: 'the inventory must be a YAML mapping (key: value)' }])
  }
  const parsed = InventorySchema.safeParse(data)
  if (parsed.success) return parsed.data
  fail(issuesToProblems(parsed.error.issues, doc, lc, file))
}

function issuesToProblems(issues: z.core.$ZodIssue[], doc: Document, lc: LineCounter, file: string): InventoryProblem[] {
  const locate = createLocator(doc, lc)
  const problems: InventoryProblem[] = []
  for (const issue of issues) {
    if (issue.code === 'unrecognized_keys') {
      for (const k of issue.keys) {
        const pos = locate(issue.path, k)
        problems.push({ file, ...pos, key: keyPath([...issue.path, k]), message: 'unknown key' })
      }
      continue
    }
    const pos = locate(issue.path)
    let message = issue.message
    if (issue.code === 'invalid_type') {
      message = doc.hasIn(issue.path as unknown[]) ? `wrong type: expected ${issue.expected}` : `required key is missing (expected ${issue.expected})`
    }
    problems.push({ file, ...pos, key: keyPath(issue.path), message })
  }
  return problems
}

export function loadInventory(sel: Selection): LoadedInventory {
  const src = resolveInventoryPath(sel)
  let text: string
  try {
    text = readBoundedText(src.path, 'inventory')
  } catch (err) {
    const why = describeReadError(err)
    const missing = !(err instanceof FileReadError) || err.reason === 'ENOENT'
    const hint = !missing
      ? (err as FileReadError).suggestion!
      : src.how === 'lab'
        ? `create ${src.path} (copy examples/comptech-lab.yaml), or run \`labctl sandbox up\` for the "sandbox" lab`
        : src.how === 'default'
          ? `pass --lab NAME or --config PATH (or set LABCTL_CONFIG), or create ${src.path} from examples/comptech-lab.yaml`
          : 'check the path given to --config / LABCTL_CONFIG'
    throw new InventoryError([{ file: src.path, line: 0, column: 0, key: '', message: `cannot read inventory: ${why}` }], hint)
  }
  const inventory = parseInventory(text, src.path)
  return { inventory, path: src.path, dir: dirname(src.path) }
}

/** Paths in an inventory are relative to the inventory file's directory. */
export function inventoryPath(loaded: LoadedInventory, p: string): string {
  if (p.startsWith('~/')) return join(process.env.HOME ?? '', p.slice(2))
  return isAbsolute(p) ? p : resolve(loaded.dir, p)
}

export function selectHosts(inv: Inventory, host?: string): Inventory['trivy']['hosts'] {
  if (!host || host === 'all') return inv.trivy.hosts
  const found = inv.trivy.hosts.filter((h) => h.name === host || h.fqdn === host)
  if (found.length === 0) {
    throw new UsageError(`no scanner host "${host}" in the inventory`, {
      code: 'UNKNOWN_HOST',
      suggestion: `use one of: ${inv.trivy.hosts.map((h) => h.name).join(', ')} (or omit --host for all)`,
    })
  }
  return found
}
