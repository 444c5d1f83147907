// Where runbooks live: the project's runbooks/ (shipped with labctl) and the site's own
// $XDG_CONFIG_HOME/labctl/runbooks/ (a site runbook of the same name wins). A path runs a file directly.
import { existsSync, readdirSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { LabctlError, UsageError } from '../errors.js'
import { xdgDir } from '../paths.js'
import { loadRunbookFile, RunbookError, type RunbookProblem } from './parse.js'
import type { LoadedRunbook } from './schema.js'

/** The project root: the nearest directory above this module holding package.json and runbooks/. */
export function projectRoot(from = dirname(fileURLToPath(import.meta.url))): string {
  let dir = from
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'runbooks'))) return dir
    const up = dirname(dir)
    if (up === dir) {
      throw new LabctlError(`cannot find labctl's own runbooks (a package.json next to runbooks/) above ${from}`, {
        code: 'NO_RUNBOOKS_DIR',
        suggestion: 'reinstall labctl, or point LABCTL_RUNBOOKS_DIR at a directory of runbooks',
      })
    }
    dir = up
  }
}

export type RunbookDir = { dir: string; source: 'builtin' | 'site' }

export function runbookDirs(env: NodeJS.ProcessEnv = process.env): RunbookDir[] {
  return [
    { dir: join(xdgDir('config', env), 'runbooks'), source: 'site' },
    { dir: env.LABCTL_RUNBOOKS_DIR || join(projectRoot(), 'runbooks'), source: 'builtin' },
  ]
}

const RUNBOOK_FILE = /^([a-z0-9][a-z0-9-]*)\.ya?ml$/

function filesIn(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => RUNBOOK_FILE.test(f)).sort()
  } catch {
    return []
  }
}

export type Catalog = { runbooks: LoadedRunbook[]; problems: RunbookProblem[] }

/** Every runbook, site ones first shadowing built-in ones of the same name; broken files are reported, not fatal. */
export function listRunbooks(env: NodeJS.ProcessEnv = process.env): Catalog {
  const seen = new Set<string>()
  const runbooks: LoadedRunbook[] = []
  const problems: RunbookProblem[] = []
  for (const { dir, source } of runbookDirs(env)) {
    for (const f of filesIn(dir)) {
      const name = RUNBOOK_FILE.exec(f)![1]!
      if (seen.has(name)) continue
      seen.add(name)
      try {
        runbooks.push(loadRunbookFile(join(dir, f), source))
      } catch (err) {
        if (err instanceof RunbookError) problems.push(...err.problems)
        else throw err
      }
    }
  }
  runbooks.sort((a, b) => a.runbook.name.localeCompare(b.runbook.name))
  return { runbooks, problems }
}

/** A runbook by name (site dir, then built-in), or by path when the argument is a file name. */
export function findRunbook(nameOrPath: string, env: NodeJS.ProcessEnv = process.env): LoadedRunbook {
  if (nameOrPath.includes('/') || /\.ya?ml$/.test(nameOrPath)) return loadRunbookFile(resolve(nameOrPath), 'file')
  if (!/^[a-z0-9][a-z0-9-]*$/.test(nameOrPath)) throw new UsageError(`"${nameOrPath}" is not a runbook name`, { code: 'UNKNOWN_RUNBOOK', suggestion: 'see `labctl runbook list`' })
  for (const { dir, source } of runbookDirs(env)) {
    for (const ext of ['yaml', 'yml']) {
      const f = join(dir, `${nameOrPath}.${ext}`)
      if (existsSync(f)) return loadRunbookFile(f, source)
    }
  }
  const names = [...new Set(runbookDirs(env).flatMap(({ dir }) => filesIn(dir).map((f) => RUNBOOK_FILE.exec(f)![1]!)))]
  const near = names.filter((n) => n.includes(nameOrPath) || nameOrPath.includes(n) || distance(n, nameOrPath) <= 3)
  throw new UsageError(`no runbook "${nameOrPath}"`, {
    code: 'UNKNOWN_RUNBOOK',
    suggestion: near.length ? `did you mean ${near.map((n) => `\`${n}\``).join(' or ')}? (\`labctl runbook list\`)` : 'see `labctl runbook list`',
  })
}

function distance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
    }
  }
  return d[a.length]![b.length]!
}
