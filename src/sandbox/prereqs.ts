import { existsSync, readlinkSync } from 'node:fs'
import { join } from 'node:path'
import { LabctlError } from '../errors.js'
import { xdgDir } from '../paths.js'
import { which } from '../which.js'
import { TRIVY_VERSION } from './layout.js'

const SETUP = './scripts/setup.sh'

// Kept as an export of this module for the sandbox's callers; the product uses src/which.ts.
export { which }

function missing(what: string, install: string): LabctlError {
  return new LabctlError(`missing prerequisite: ${what}`, { code: 'MISSING_PREREQUISITE', suggestion: `run \`${SETUP}\` (or \`${install}\`)` })
}

export type Tools = { haproxy: string; dnsmasq: string; registry: string; skopeo: string; trivy: string; labfixtures: string }

export function trivyBinary(version = TRIVY_VERSION): string {
  return join(xdgDir('cache'), 'trivy', version, 'trivy')
}

export function findTools(): Tools {
  const need = (cmd: string, pkg: string): string => which(cmd) ?? (() => { throw missing(cmd, `apt-get install ${pkg}`) })()
  const haproxy = need('haproxy', 'haproxy')
  const dnsmasq = need('dnsmasq', 'dnsmasq-base')
  const registry = need('docker-registry', 'docker-registry')
  const skopeo = need('skopeo', 'skopeo')
  const trivy = process.env.LABCTL_TRIVY_BIN || trivyBinary()
  if (!existsSync(trivy)) throw missing(`trivy ${TRIVY_VERSION} server binary (${trivy})`, './scripts/build-tools.sh')
  const fxLink = join(xdgDir('cache'), 'labfixtures', 'current')
  let labfixtures = process.env.LABCTL_LABFIXTURES_BIN || fxLink
  try {
    if (!process.env.LABCTL_LABFIXTURES_BIN) labfixtures = readlinkSync(fxLink)
  } catch {
    /* reported below */
  }
  if (!existsSync(labfixtures)) throw missing(`labfixtures test tool (${fxLink})`, './scripts/build-tools.sh')
  return { haproxy, dnsmasq, registry, skopeo, trivy, labfixtures }
}
