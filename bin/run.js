#!/usr/bin/env node
// Entry point. The version answer needs no framework, so it does not load one.
import * as nodeModule from 'node:module'

const major = Number(process.versions.node.split('.')[0])
if (major < 22) {
  process.stderr.write(`labctl: error: Node.js ${process.version} is too old (need >= 22)\n  next: run ./scripts/setup.sh (it installs node@24 into .tools/) and use bin/labctl\n`)
  process.exit(1)
}
nodeModule.enableCompileCache?.()
const argv = process.argv.slice(2)
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
