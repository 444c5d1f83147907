// rotate-token on a fleet: the server step (and its rollback) on every host at once, but a failure is
// reported only once every host has ended, so a rollback never races a host still mid-switch.
import { describe, expect, it } from 'vitest'
import type { ScannerHost } from '../../src/inventory/schema.js'
import { onEveryHost } from '../../src/trivy/rotate.js'

const hosts = ['trivy-0', 'trivy-1', 'trivy-2'].map((name) => ({ name }) as ScannerHost)

describe('onEveryHost', () => {
  it('waits for the slow host before failing with the first failure', async () => {
    const ended: string[] = []
    const t0 = Date.now()
    const run = onEveryHost(hosts, async (h) => {
      if (h.name === 'trivy-0') throw new Error('trivy-0: restart failed')
      await new Promise((r) => setTimeout(r, h.name === 'trivy-1' ? 300 : 50))
      ended.push(h.name)
    })
    await expect(run).rejects.toThrow('trivy-0: restart failed')
    expect(ended.sort()).toEqual(['trivy-1', 'trivy-2'])
    expect(Date.now() - t0).toBeGreaterThanOrEqual(290)
  })

  it('resolves when every host succeeded', async () => {
    const seen: string[] = []
    await onEveryHost(hosts, async (h) => void seen.push(h.name))
    expect(seen).toEqual(['trivy-0', 'trivy-1', 'trivy-2'])
  })
})
