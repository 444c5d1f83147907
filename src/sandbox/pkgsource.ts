// The sandbox's package source: a real .deb built around the real trivy binary (Package trivy,
// /usr/bin/trivy), laid out like a GitHub release (v{version}/trivy_{version}_Linux-64bit.deb next to
// trivy_{version}_checksums.txt), served on loopback by a tiny static file server. `labctl trivy
// install` downloads it on the scanner host, verifies the checksum and runs dpkg there.
import { createHash } from 'node:crypto'
import { copyFileSync, createReadStream, existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { LabctlError, oneLine } from '../errors.js'
import { xdgDir } from '../paths.js'
import { RELEASE_ARCH } from '../trivy/install-render.js'
import { TRIVY_VERSION } from './layout.js'


export type PackageSource = { root: string; version: string; arch: string; debPath: string; debName: string; checksumsName: string; sha256: string }

/** Where the built packages are cached, by version: served as the package server's document root. */
export function packageRoot(): string {
  return join(xdgDir('cache'), 'trivy-deb')
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256')
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer)
  return h.digest('hex')
}

/**
 * Builds (once per version and architecture; cached) trivy_{version}_Linux-{arch}.deb around the given
 * trivy binary with dpkg-deb, and its checksums file in sha256sum format.
 */
export async function ensureTrivyDeb(trivyBin: string, version = TRIVY_VERSION): Promise<PackageSource> {
  const dpkgArch = (await execa('dpkg', ['--print-architecture'], { timeout: 10_000 })).stdout.trim()
  const arch = RELEASE_ARCH[dpkgArch]
  if (!arch) throw new LabctlError(`the sandbox package source cannot build a trivy .deb for architecture ${dpkgArch}`)
  const root = packageRoot()
  const dir = join(root, `v${version}`)
  const debName = `trivy_${version}_Linux-${arch}.deb`
  const checksumsName = `trivy_${version}_checksums.txt`
  const debPath = join(dir, debName)
  const sumsPath = join(dir, checksumsName)
  if (!existsSync(debPath) || !existsSync(sumsPath)) {
    const stage = join(root, `.build-${version}-${process.pid}-${Date.now()}`)
    rmSync(stage, { recursive: true, force: true })
    try {
      const pkg = join(stage, 'pkg')
      mkdirSync(join(pkg, 'DEBIAN'), { recursive: true })
      mkdirSync(join(pkg, 'usr', 'bin'), { recursive: true })
      try {
        linkSync(trivyBin, join(pkg, 'usr', 'bin', 'trivy'))
      } catch {
        copyFileSync(trivyBin, join(pkg, 'usr', 'bin', 'trivy'))
      }
      writeFileSync(
        join(pkg, 'DEBIAN', 'control'),
        [
          'Package: trivy',
          `Version: ${version}`,
          'Section: utils',
          'Priority: optional',
          `Architecture: ${dpkgArch}`,
          'Maintainer: labctl sandbox <labctl@sandbox.lab.test>',
          'Homepage: https://github.com/aquasecurity/trivy',
          'Description: A Fast Vulnerability Scanner for Containers',
          ' The real trivy binary, packaged by the labctl sandbox like the release .deb.',
          '',
        ].join('\n'),
      )
      const out = join(stage, 'out')
      mkdirSync(out, { recursive: true })
      await execa('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z1', '--build', pkg, join(out, debName)], { timeout: 180_000 })
      writeFileSync(join(out, checksumsName), `${await sha256File(join(out, debName))}  ${debName}\n`)
      rmSync(pkg, { recursive: true, force: true })
      mkdirSync(root, { recursive: true })
      rmSync(dir, { recursive: true, force: true })
      try {
        renameSync(out, dir)
      } catch (err) {
        // Another sandbox built it at the same time: theirs is as good as ours.
        if (!existsSync(debPath)) throw err
      }
    } catch (err) {
      const e = err as { shortMessage?: string; stderr?: string; message?: string }
      throw new LabctlError(`building the sandbox's trivy .deb failed: ${oneLine(e.stderr || e.shortMessage || e.message || String(err))}`, {
        suggestion: 'check that dpkg-deb is installed (`./scripts/setup.sh`) and the cache dir is writable',
      })
    } finally {
      rmSync(stage, { recursive: true, force: true })
    }
  }
  const line = readFileSync(sumsPath, 'utf8').trim()
  return { root, version, arch, debPath, debName, checksumsName, sha256: line.split(/\s+/)[0] ?? '' }
}

/**
 * The package server, run as `node -e PKG_SERVER ROOT PORT MODE`: GET/HEAD of files under ROOT, one log
 * line per request. MODE "die-midway" is the pkg-source-down fault: the next .deb download is cut off
 * half-way (Content-Length promises more than is sent) and the server exits, so nothing answers after.
 */
export const PKG_SERVER = String.raw`
const http = require('http'), fs = require('fs'), path = require('path')
const [root, port, mode, host = '127.0.0.1'] = process.argv.slice(1)
const log = (m) => process.stdout.write(new Date().toISOString() + ' ' + m + '\n')
const srv = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x')
  const rel = path.normalize(decodeURIComponent(url.pathname)).replace(/^([/\\])+/, '')
  const file = path.join(root, rel)
  const done = (code, extra) => log(req.method + ' ' + url.pathname + ' ' + code + (extra ? ' ' + extra : ''))
  if (req.method !== 'GET' && req.method !== 'HEAD') { res.writeHead(405).end(); return done(405) }
  if (rel.startsWith('..') || rel.split(/[/\\]/).some((p) => p.startsWith('.'))) { res.writeHead(404).end('not found\n'); return done(404) }
  fs.stat(file, (err, st) => {
    if (err || !st.isFile()) { res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n'); return done(404) }
    const type = file.endsWith('.deb') ? 'application/vnd.debian.binary-package' : 'text/plain'
    res.writeHead(200, { 'content-type': type, 'content-length': st.size })
    if (req.method === 'HEAD') { res.end(); return done(200, 'head') }
    if (mode === 'die-midway' && file.endsWith('.deb')) {
      const half = Math.floor(st.size / 2)
      fs.createReadStream(file, { start: 0, end: half - 1 }).on('end', () => {
        done(200, 'cut off after ' + half + ' of ' + st.size + ' bytes (pkg-source-down)')
        setTimeout(() => { res.socket && res.socket.destroy(); process.exit(1) }, 50)
      }).pipe(res, { end: false })
      return
    }
    fs.createReadStream(file).on('end', () => done(200, st.size + ' bytes')).pipe(res)
  })
})
srv.listen(Number(port), host, () => log('serving ' + root + ' on ' + host + ':' + port + (mode === 'die-midway' ? ' (will go down during the next .deb download)' : '')))
`

/** The URL template written into the sandbox inventory (trivy.packageUrl). */
export function sandboxPackageUrl(port: number, host = '127.0.0.1'): string {
  return `http://${host}:${port}/v{version}/trivy_{version}_Linux-{arch}.deb`
}
