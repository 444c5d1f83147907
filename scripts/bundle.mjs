// Builds dist/ with esbuild: one ESM file per command plus shared chunks, so a command loads a few
// files instead of hundreds of modules (start-up time). Type checking is `tsc --noEmit`.
import { build } from 'esbuild'
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const walk = (dir) =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') && !f.startsWith('_') ? [relative(root, p)] : []
  })

await build({
  absWorkingDir: root,
  // Commands, the schema exporter, and the few core modules the bench scripts import.
  entryPoints: [...walk(join(root, 'commands')), 'commands/_not-found.ts', 'src/inventory/export-schema.ts', 'src/net/connect-proxy.ts', 'src/net/http.ts', 'src/trivy/api.ts', 'src/ssh/index.ts', 'src/trivy/check.ts', 'src/inventory/load.ts'],
  outdir: 'dist',
  outbase: '.',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  sourcemap: false,
  legalComments: 'none',
  chunkNames: 'chunks/[name]-[hash]',
  // oclif must stay one shared copy (it finds plugins relative to itself); ssh2 has optional native parts.
  external: ['@oclif/core', '@oclif/core/*', 'ssh2', 'cpu-features'],
  banner: { js: "import { createRequire as __labctlRequire } from 'node:module'; const require = __labctlRequire(import.meta.url);" },
  logLevel: 'warning',
})
