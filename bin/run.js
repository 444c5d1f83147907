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
const argv = globalFlagsLast(process.argv.slice(2))
process.argv = [...process.argv.slice(0, 2), ...argv]
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v' || argv[0] === 'version')) {
  const pkg = nodeModule.createRequire(import.meta.url)('../package.json')
  process.stdout.write(`labctl/${pkg.version} ${process.platform}-${process.arch} node-${process.version}\n`)
} else if (!(argv.includes('--help') || argv.includes('-h')) || !(await import('./fast-help.js')).fastHelp(new URL('../oclif.manifest.json', import.meta.url), argv)) {
  const { execute } = await import('@oclif/core')
  await execute({ dir: import.meta.url })
  // The command is done: do not wait for a step it abandoned (a hung peer after Ctrl-C, say).
  // stdout and stderr are synchronous on Linux, so nothing printed is lost.
  process.exit(process.exitCode ?? 0)
}
