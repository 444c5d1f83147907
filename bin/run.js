#!/usr/bin/env node
// Entry point. The version answer needs no framework, so it does not load one.
import { createRequire, enableCompileCache } from 'node:module'

enableCompileCache?.()
const argv = process.argv.slice(2)
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v' || argv[0] === 'version')) {
  const pkg = createRequire(import.meta.url)('../package.json')
  process.stdout.write(`labctl/${pkg.version} ${process.platform}-${process.arch} node-${process.version}\n`)
} else {
  const { execute } = await import('@oclif/core')
  await execute({ dir: import.meta.url })
}
