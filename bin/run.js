#!/usr/bin/env node
// Entry point. The version answer needs no framework, so it does not load one.
import * as nodeModule from 'node:module'

const major = Number(process.versions.node.split('.')[0])
if (major < 22) {
  process.stderr.write(`labctl: error: Node.js ${process.version} is too old (need >= 22)\n  next: run ./scripts/setup.sh (it installs node@24 into .tools/) and use bin/labctl\n`)
  process.exit(1)
}
nodeModule.enableCompileCache?.()

// Global flags may come before the command (`labctl --lab sandbox trivy validate`); oclif wants them
// after it, so move them there (before a `--`, whose tail belongs to the command).
const GLOBAL_WITH_VALUE = new Set(['--lab', '--config'])
const GLOBAL_BOOLEAN = new Set(['--json', '--yes', '-y', '--no-prompt'])
function globalFlagsLast(args) {
  const lead = []
  let i = 0
  for (; i < args.length; i++) {
    const a = args[i]
    if (GLOBAL_WITH_VALUE.has(a) && i + 1 < args.length) lead.push(a, args[++i])
    else if (GLOBAL_BOOLEAN.has(a) || [...GLOBAL_WITH_VALUE].some((f) => a.startsWith(`${f}=`))) lead.push(a)
    else break
  }
  if (lead.length === 0) return args
  const rest = args.slice(i)
  const dd = rest.indexOf('--')
  return dd === -1 ? [...rest, ...lead] : [...rest.slice(0, dd), ...lead, ...rest.slice(dd)]
}
// A labctl command (its file is in dist/commands/) needs none of the plugins (`help`, `autocomplete`):
// oclif is then loaded with the root package alone, which skips finding, reading and matching the
// plugins on every run. Help, unknown commands (did-you-mean) and the plugins' own commands take the
// full path.
function ownCommand(args, { existsSync }) {
  if (args.includes('--help') || args.includes('-h')) return false
  const words = []
  for (const a of args.slice(0, 3)) {
    if (!/^[a-z][a-z0-9-]*$/.test(a)) break
    words.push(a)
  }
  for (let n = words.length; n > 0; n--) {
    if (existsSync(new URL(`../dist/commands/${words.slice(0, n).join('/')}.js`, import.meta.url))) return true
  }
  return false
}
function withoutPlugins({ readFileSync }, { fileURLToPath }) {
  const root = fileURLToPath(new URL('..', import.meta.url))
  const pjson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  return { root, pjson: { ...pjson, oclif: { ...pjson.oclif, plugins: [] } } }
}
const argv = globalFlagsLast(process.argv.slice(2))
process.argv = [...process.argv.slice(0, 2), ...argv]
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v' || argv[0] === 'version')) {
  const pkg = nodeModule.createRequire(import.meta.url)('../package.json')
  process.stdout.write(`labctl/${pkg.version} ${process.platform}-${process.arch} node-${process.version}\n`)
} else if (!(argv.includes('--help') || argv.includes('-h')) || !(await import('./fast-help.js')).fastHelp(new URL('../oclif.manifest.json', import.meta.url), argv)) {
  // dist/oclif.js is @oclif/core bundled into one file with the commands' chunks (the same copy the
  // commands extend): a few files to load instead of ~160 modules.
  const { default: oclif } = await import('../dist/oclif.js')
  const [fs, url] = await Promise.all([import('node:fs'), import('node:url')])
  await oclif.execute(ownCommand(argv, fs) ? { loadOptions: withoutPlugins(fs, url) } : { dir: import.meta.url })
  // The command is done: do not wait for a step it abandoned (a hung peer after Ctrl-C, say).
  // stdout and stderr are synchronous on Linux, so nothing printed is lost.
  process.exit(process.exitCode ?? 0)
}
