// Tests of the binary run bin/labctl, which loads dist/: build it when it is missing, and say so when
// it is older than the sources (the tests would exercise the old build).
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(fileURLToPath(import.meta.url), '..', '..', '..')
const MANIFEST = join(ROOT, 'oclif.manifest.json') // written near the end of `npm run build`

function newest(dir: string, depth = 0): number {
  if (depth > 8 || !existsSync(dir)) return 0
  let t = 0
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name)
    t = Math.max(t, e.isDirectory() ? newest(p, depth + 1) : e.name.endsWith('.ts') ? statSync(p).mtimeMs : 0)
  }
  return t
}

export default function setup(): void {
  if (!existsSync(join(ROOT, 'dist', 'commands')) || !existsSync(MANIFEST)) {
    process.stderr.write('[build] dist/ is missing: npm run build\n')
    execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: ['ignore', 'ignore', 'inherit'], timeout: 300_000 })
    return
  }
  const src = Math.max(newest(join(ROOT, 'src')), newest(join(ROOT, 'commands')))
  if (src > statSync(MANIFEST).mtimeMs) {
    process.stderr.write('[build] dist/ is older than src/ or commands/: tests of bin/labctl use the old build (npm run build)\n')
  }
}
