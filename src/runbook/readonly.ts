// Which labctl command lines a `check` step may run: only read-only ones, known by construction. A
// check runs without a confirmation and also under --dry-run, so it must not be able to change anything
// — not the servers, not Jenkins, not a local file. Rather than guess from a command's name, this is an
// allowlist of labctl subcommands and, for each, the flags that keep it read-only (e.g. `trivy validate`
// but not its `--junit FILE`, `trivy rotate-token` only with `--status` or `--dry-run`). Anything else —
// another command, another flag, a short flag, arguments after `--` — is refused: make it an action step.
// The parser applies it to the runbook's text, the executor again to the command line once its
// {{placeholders}} are filled (a value may not smuggle in a flag).

type FlagKind = 'value' | 'bool'

export type ReadOnlyCommand = {
  /** The subcommand words, e.g. ['trivy', 'validate']. */
  words: readonly string[]
  /** Flags (long form) that keep it read-only, besides the global ones. */
  flags: Readonly<Record<string, FlagKind>>
  /** One of these flags must be given (what makes the command read-only). */
  requireOneOf?: readonly string[]
  /** Positional arguments it takes. */
  args?: number
  /** Short flags it takes, as their long form. */
  short?: Readonly<Record<string, string>>
}

/** Accepted on every read-only command: which lab, and the output format. `--yes` is not: nothing to confirm. */
const GLOBAL_FLAGS: Readonly<Record<string, FlagKind>> = { '--lab': 'value', '--config': 'value', '--json': 'bool', '--no-prompt': 'bool' }

export const READ_ONLY_COMMANDS: readonly ReadOnlyCommand[] = [
  {
    words: ['trivy', 'validate'],
    flags: { '--host': 'value', '--only': 'value', '--skip': 'value', '--token-file': 'value', '--image': 'value', '--gate': 'value', '--insecure': 'bool', '--timeout': 'value', '--scan-timeout': 'value' },
  },
  { words: ['trivy', 'check'], flags: { '--host': 'value', '--since': 'value', '--timeout': 'value' } },
  { words: ['trivy', 'status'], flags: { '--host': 'value', '--timeout': 'value' } },
  // --follow reads until the step's timeout (or Ctrl-C) ends it: read-only, if seldom useful in a check.
  { words: ['trivy', 'logs'], flags: { '--host': 'value', '--since': 'value', '--lines': 'value', '--follow': 'bool' }, short: { '-n': '--lines', '-f': '--follow' } },
  { words: ['trivy', 'rotate-token'], flags: { '--host': 'value', '--status': 'bool', '--dry-run': 'bool' }, requireOneOf: ['--status', '--dry-run'] },
  { words: ['config', 'show'], flags: {} },
  { words: ['config', 'validate'], flags: {} },
  { words: ['sandbox', 'status'], flags: {} },
  { words: ['runbook', 'list'], flags: {} },
  { words: ['runbook', 'show'], flags: { '--host': 'value' }, args: 1 },
]

/** Why a flag that is not on the list is not: for the message. */
const WHY: Readonly<Record<string, string>> = {
  '--junit': 'writes a file',
  '--prometheus': 'writes a file',
  '--accept-new-host-key': 'writes known_hosts',
  '--yes': 'answers a confirmation: a check has nothing to confirm',
}

export const readOnlyList = (): string => READ_ONLY_COMMANDS.map((c) => c.words.join(' ') + (c.requireOneOf ? ` ${c.requireOneOf.join('|')}` : '')).join(', ')

/**
 * Why this labctl argv (without `labctl`) is not read-only by construction, or undefined when it is.
 * `filled`: the {{placeholders}} are filled (no value may then look like a flag).
 */
export function readOnlyProblem(argv: readonly string[], filled = false): string | undefined {
  const words: string[] = []
  let i = 0
  while (i < argv.length && !argv[i]!.startsWith('-') && words.length < 2) words.push(argv[i++]!)
  const cmd = READ_ONLY_COMMANDS.find((c) => c.words.length === words.length && c.words.every((w, k) => w === words[k]))
  const name = words.join(' ')
  if (!cmd) {
    if (/\{\{/.test(name)) return `the command "${name}" is a {{placeholder}}: a check step must name a read-only labctl command (${readOnlyList()})`
    return `"${name}" may change state: a check step runs only read-only labctl commands (${readOnlyList()}); make it an action step`
  }
  const seen = new Set<string>()
  let args = 0
  for (; i < argv.length; i++) {
    const a = argv[i]!
    if (a === '--') return `"${name}" with arguments after "--": a check step runs only read-only labctl commands; make it an action step`
    if (!a.startsWith('-')) {
      if (++args > (cmd.args ?? 0)) return `"${name}" takes no argument "${a}" in a check step`
      continue
    }
    const long = !a.startsWith('--') ? cmd.short?.[a] : a
    if (long === undefined) return `short flag "${a}" in a check step: write the long form (e.g. --lines)`
    const eq = long.indexOf('=')
    const flag = eq < 0 ? long : long.slice(0, eq)
    const kind = cmd.flags[flag] ?? GLOBAL_FLAGS[flag]
    if (!kind) {
      const why = WHY[flag] ? ` (it ${WHY[flag]})` : ''
      const allowed = Object.keys(cmd.flags)
      return `${flag} is not read-only${why}: a check step runs "${name}" only with ${allowed.length ? allowed.join(', ') : 'no flags'} (and --lab, --config, --json); make it an action step`
    }
    seen.add(flag)
    if (kind === 'bool') {
      if (eq >= 0) return `${flag} takes no value in a check step`
      continue
    }
    if (eq >= 0) continue
    const value = argv[i + 1]
    if (value === undefined) return `${flag} needs a value`
    if (value.startsWith('-')) return filled ? `the value of ${flag} ("${value}") looks like a flag: give it as ${flag}=VALUE` : `the value of ${flag} starts with "-": write ${flag}=${value}`
    i++
  }
  if (cmd.requireOneOf && !cmd.requireOneOf.some((f) => seen.has(f))) {
    return `"${name}" changes state unless given ${cmd.requireOneOf.join(' or ')}: a check step runs it only so; make it an action step otherwise`
  }
  return undefined
}
