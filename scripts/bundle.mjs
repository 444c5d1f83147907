// Builds dist/ with esbuild: one ESM file per command plus shared chunks, so a command loads a few
// files instead of hundreds of modules (start-up time). Type checking is `tsc --noEmit`.
import { build } from 'esbuild'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const walk = (dir) =>
  readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') && !f.startsWith('_') ? [relative(root, p)] : []
  })

// oclif reads its own package.json relative to __dirname (no such thing in an ESM bundle): inline it.
const oclifOwnPackageJson = {
  name: 'oclif-own-package-json',
  setup(b) {
    b.onLoad({ filter: /@oclif[\\/]core[\\/]lib[\\/](cache|index)\.js$/ }, (args) => {
      const src = readFileSync(args.path, 'utf8')
      const out = src
        .replace("JSON.parse((0, node_fs_1.readFileSync)((0, node_path_1.join)(__dirname, '..', 'package.json'), 'utf8'))", "require('../package.json')")
        .replace("const root = path.join(__dirname, '..');", '')
        .replace("require(path.join(root, 'package.json'))", "require('../package.json')")
      if (out.includes('__dirname')) throw new Error(`${args.path}: oclif changed how it finds its package.json; update scripts/bundle.mjs`)
      return { contents: out, loader: 'js' }
    })
  },
}

// `undici` → scripts/undici-core.cjs (Agent and request only; see there). A value import of another
// name from undici fails the build here rather than being undefined at run time.
const UNDICI_CORE = new Set(['Agent', 'request'])
for (const f of walk(join(root, 'src'))) {
  for (const m of readFileSync(join(root, f), 'utf8').matchAll(/import\s*(type\s*)?\{([^}]*)\}\s*from\s*'undici'/g)) {
    if (m[1]) continue
    const names = m[2].split(',').map((n) => n.trim()).filter((n) => n && !n.startsWith('type '))
    const other = names.map((n) => n.split(/\s+as\s+/)[0]).filter((n) => !UNDICI_CORE.has(n))
    if (other.length) throw new Error(`${f}: imports ${other.join(', ')} from undici: add it to scripts/undici-core.cjs`)
  }
}
const undiciCore = {
  name: 'undici-core',
  setup(b) {
    b.onResolve({ filter: /^undici$/ }, (args) => {
      if (args.importer.includes('node_modules')) return undefined
      return { path: join(root, 'scripts', 'undici-core.cjs') }
    })
    // `dns2` → scripts/dns2-packet.cjs (its Packet codec only; see there).
    b.onResolve({ filter: /^dns2$/ }, (args) => {
      if (args.importer.includes('node_modules')) return undefined
      return { path: join(root, 'scripts', 'dns2-packet.cjs') }
    })
  },
}

await build({
  absWorkingDir: root,
  // Commands, the schema exporter, and the few core modules the bench scripts import.
  // dist/oclif.js: the one copy of @oclif/core, bundled, that bin/run.js and every command share.
  entryPoints: [{ in: '@oclif/core', out: 'oclif' }, ...walk(join(root, 'commands')), 'commands/_not-found.ts', 'src/inventory/export-schema.ts', 'src/net/connect-proxy.ts', 'src/net/http.ts', 'src/trivy/api.ts', 'src/ssh/index.ts', 'src/trivy/check.ts', 'src/inventory/load.ts'],
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
  // typescript / ts-node: oclif's development mode only (never in a built labctl).
  external: ['ssh2', 'cpu-features', 'typescript', 'ts-node', 'tsx'],
  plugins: [oclifOwnPackageJson, undiciCore],
  banner: { js: "import { createRequire as __labctlRequire } from 'node:module'; const require = __labctlRequire(import.meta.url);" },
  logLevel: 'warning',
})
