// `labctl TOPIC CMD --help` straight from oclif.manifest.json, without loading the framework
// (which alone costs more than a whole `node -e 0`). Anything it cannot answer returns false and
// falls through to oclif's own help.
import { readFileSync } from 'node:fs'

const wrap = (text, indent) => text.split('\n').map((l) => (l ? indent + l : l)).join('\n')

function flagLine(f) {
  const names = `${f.char ? `-${f.char}, ` : '    '}--${f.name}${f.type === 'option' ? `=<${f.options ? f.options.join('|') : 'value'}>` : ''}`
  const help = (f.summary ?? f.description ?? '').split('\n')[0]
  const extra = [f.default !== undefined && f.type === 'option' ? `[default: ${f.default}]` : '', f.env ? `[env: ${f.env}]` : ''].filter(Boolean).join(' ')
  return [names, `${help}${extra ? ` ${extra}` : ''}`]
}

function table(rows) {
  const w = Math.min(38, Math.max(...rows.map((r) => r[0].length)))
  return rows.map(([a, b]) => `  ${a.padEnd(w)}  ${b}`).join('\n')
}

export function fastHelp(manifestUrl, argv, bin = 'labctl') {
  const words = argv.filter((a) => a !== '--help' && a !== '-h')
  if (words.length === argv.length || words.some((w) => w.startsWith('-'))) return false
  let manifest
  try {
    manifest = JSON.parse(readFileSync(manifestUrl, 'utf8'))
  } catch {
    return false
  }
  const cmd = manifest.commands?.[words.join(':')]
  if (!cmd || cmd.hidden) return false
  const flags = Object.values(cmd.flags ?? {}).filter((f) => !f.hidden)
  const own = flags.filter((f) => f.helpGroup !== 'GLOBAL')
  const global = flags.filter((f) => f.helpGroup === 'GLOBAL')
  const args = Object.values(cmd.args ?? {})
  const usage = `$ ${bin} ${words.join(' ')}${args.map((a) => (a.required ? ` ${a.name.toUpperCase()}` : ` [${a.name.toUpperCase()}]`)).join('')} [FLAGS]${cmd.strict === false ? ' [-- ARGS...]' : ''}`
  const out = []
  if (cmd.summary) out.push(cmd.summary, '')
  out.push('USAGE', `  ${usage}`, '')
  if (args.length) out.push('ARGUMENTS', table(args.map((a) => [a.name.toUpperCase(), a.description ?? ''])), '')
  if (own.length) out.push('FLAGS', table(own.map(flagLine)), '')
  if (global.length) out.push('GLOBAL FLAGS', table(global.map(flagLine)), '')
  if (cmd.description) out.push('DESCRIPTION', wrap(cmd.description, '  '), '')
  if (cmd.examples?.length) {
    const ex = cmd.examples.map((e) => (typeof e === 'string' ? e : e.command)).map((e) => `  $ ${e.replaceAll('<%= config.bin %>', bin)}`)
    out.push('EXAMPLES', ...ex, '')
  }
  process.stdout.write(`${out.join('\n')}\n`)
  return true
}
