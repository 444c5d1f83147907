// The inventory "sandbox" that `labctl sandbox up` writes: the lab as labctl sees it (addresses, names, the
// package source, the DB mirror, the firewall allowlist, Jenkins). `sandbox up` provisions trivy-0 and the
// edge from this same inventory with labctl's own install service and HAProxy renderer.
import { InventorySchema, type Inventory } from '../inventory/schema.js'
import { hostPaths, HOST_USER, SERVICE } from './host.js'
import { SANDBOX_NAMES, TRIVY_VERSION, type SandboxPaths, type SandboxState } from './layout.js'
import { componentAddr, endpoint, nodeAddr } from './nodes.js'
import { sandboxPackageUrl } from './pkgsource.js'

/** Where the sandbox's offline DB mirror lives in its registry (trivy-db's own repository name). */
export const DB_MIRROR_REPO = 'aquasec/trivy-db:2'

/** The sandbox Jenkins: labctl's API user and the credential the pipelines read the token from. */
export const JENKINS_USER = 'labctl'
export const JENKINS_CREDENTIAL = 'trivy-server-token'

/** Who may reach the listener directly in the lab network, besides the edge. */
export function firewallAllowlist(state: SandboxState): string[] {
  return state.net ? [state.net.workstation, nodeAddr(state, 'agent')] : []
}

export function sandboxInventory(state: SandboxState, p: SandboxPaths): Record<string, unknown> {
  return {
    name: 'sandbox',
    description: state.bare
      ? 'local sandbox lab started by `labctl sandbox up --bare`: the scanner host has no trivy until `labctl trivy install`'
      : state.net
        ? `local sandbox lab started by \`labctl sandbox up\` (real Trivy, HAProxy, dnsmasq, registry, Jenkins, each on its own network namespace on ${state.net.subnet})`
        : 'local sandbox lab started by `labctl sandbox up --loopback` (real Trivy, HAProxy, dnsmasq, registry on 127.0.0.1)',
    dns: { servers: [endpoint(state, 'dns')], timeoutMs: 1000 },
    trivy: {
      version: TRIVY_VERSION,
      publicUrl: `https://${SANDBOX_NAMES.publicName}:${state.ports.haproxy}`,
      caBundle: p.caCert,
      tokenHeader: 'Trivy-Token',
      cacheDir: '/var/lib/trivy',
      serviceName: SERVICE,
      envFile: '/etc/trivy/trivy-server.env',
      dbRepositories: [`${endpoint(state, 'registry')}/${DB_MIRROR_REPO}`],
      ...(state.ports.pkg ? { packageUrl: sandboxPackageUrl(state.ports.pkg, componentAddr(state, 'pkg')) } : {}),
      // Besides the edge, the listener answers the operator's workstation and the build agent; not the outsider.
      ...(state.net ? { allowlist: firewallAllowlist(state) } : {}),
      // The direct debug URL is plain HTTP inside the lab /24 (behind that firewall), as in the seed lab.
      ...(state.net ? { plainHttpNetworks: [state.net.subnet] } : {}),
      hosts: [
        {
          name: 'trivy-0',
          fqdn: SANDBOX_NAMES.fqdn,
          aliases: [SANDBOX_NAMES.alias],
          address: nodeAddr(state, 'trivy-0'),
          listen: endpoint(state, 'trivy'),
          debugUrl: `http://${SANDBOX_NAMES.fqdn}:${state.ports.trivy}`,
          ssh: {
            user: HOST_USER,
            port: state.ports.host,
            identityFile: hostPaths(p).clientKey,
            knownHostsFile: hostPaths(p).knownHosts,
            connectTimeoutMs: 5000,
          },
          sudo: true,
        },
      ],
    },
    ...(state.ports.jenkins
      ? { jenkins: { url: `http://${endpoint(state, 'jenkins')}`, credentialId: JENKINS_CREDENTIAL, store: 'system', user: JENKINS_USER, apiTokenFile: p.jenkinsToken } }
      : {}),
    secrets: { dir: p.secrets },
    thresholds: { dbFreshnessHours: 48, diskWarnPercent: 80, diskCritPercent: 90, certWarnDays: 21, certCritDays: 7 },
  }
}

/** The same inventory as labctl reads it (schema defaults applied): what install and the renderers get. */
export function sandboxInventoryParsed(state: SandboxState, p: SandboxPaths): Inventory {
  return InventorySchema.parse(sandboxInventory(state, p))
}
