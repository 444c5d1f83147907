// The suite's sandbox has an edge: section: HAProxy's runtime API over SSH to the edge machine. Drain and
// re-enable trivy-0 through it, and see validate's edge checks follow (exit 3 while nothing is served).
import { afterAll, describe, expect, inject, it } from 'vitest'
import { inventoryEdge } from '../../src/edge/index.js'
import { loadInventory } from '../../src/inventory/load.js'
import { Remote } from '../../src/ssh/remote.js'
import { labctl } from '../helpers.js'

const sb = inject('sandbox')
const env = { XDG_CONFIG_HOME: `${sb.root}/config`, XDG_STATE_HOME: `${sb.root}/state`, LABCTL_SANDBOX_DIR: sb.dir }
const remote = new Remote({ sshConfigFile: null })

afterAll(async () => {
  const loaded = loadInventory({ config: sb.inventory })
  await inventoryEdge(loaded.inventory, remote)?.setState('trivy-0', 'ready').catch(() => undefined)
  await remote.close()
})

describe('the sandbox edge through its runtime API', () => {
  it('reads trivy-0 UP, drains it (validate: exit 3, nothing served), re-enables it (validate passes)', async () => {
    const loaded = loadInventory({ config: sb.inventory })
    expect(loaded.inventory.edge).toMatchObject({ backend: 'trivy-vm-be', ssh: { user: 'root' } })
    const edge = inventoryEdge(loaded.inventory, remote)!
    const [s] = await edge.servers()
    expect(s).toMatchObject({ name: 'trivy-0', status: 'UP', up: true, admin: 'ready', address: loaded.inventory.trivy.hosts[0]!.address })

    expect((await edge.setState('trivy-0', 'drain')).admin).toBe('drain')
    const drained = await labctl(['--config', sb.inventory, 'trivy', 'validate', '--only', 'edge'], { env })
    expect(drained.exitCode, String(drained.stdout)).toBe(3)
    expect(String(drained.stdout)).toMatch(/FAIL\s+edge backend trivy-vm-be\s+0\/1 UP in trivy-vm-be \(down or out: trivy-0\): the edge serves nothing/)
    expect(String(drained.stdout)).toMatch(/WARN\s+edge trivy-0\s+taken out at the edge \(drain\)/)

    await edge.setState('trivy-0', 'ready')
    const back = await labctl(['--config', sb.inventory, 'trivy', 'validate', '--only', 'edge,healthz'], { env })
    expect(back.exitCode, String(back.stdout)).toBe(0)
    expect(String(back.stdout)).toMatch(/ok\s+edge backend trivy-vm-be\s+1\/1 UP/)
  })

  it('the edge sshd gives no shell: a command over it fails', async () => {
    const loaded = loadInventory({ config: sb.inventory })
    const { edgeTarget } = await import('../../src/edge/index.js')
    const r = await remote.run(edgeTarget(loaded.inventory.edge!), ['id'], { timeoutMs: 10_000 })
    expect(r.code).not.toBe(0)
    expect(r.stdout).not.toMatch(/uid=/)
  })
})
