// Starts one sandbox lab for the whole run (the lab network, as `labctl sandbox up`; LABCTL_SANDBOX_NET=0 for
// the loopback one), in throw-away XDG dirs, and stops it at the end.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const root = mkdtempSync(join(tmpdir(), 'labctl-test-'))
  process.env.XDG_CONFIG_HOME = join(root, 'config')
  process.env.XDG_STATE_HOME = join(root, 'state')
  process.env.LABCTL_SANDBOX_DIR = join(root, 'state', 'labctl', 'sandbox')
  process.env.LABCTL_TEST_ROOT = root
  const { sandboxUp, sandboxDown } = await import('../../src/sandbox/index.js')
  const started = Date.now()
  const up = await sandboxUp({ progress: (m) => process.stderr.write(`[sandbox] ${m}\n`) })
  process.stderr.write(`[sandbox] up in ${Date.now() - started} ms\n`)
  project.provide('sandbox', { root, inventory: up.inventory ?? '', image: up.image ?? '', dir: up.dir })
  return async () => {
    await sandboxDown()
    rmSync(root, { recursive: true, force: true })
  }
}

declare module 'vitest' {
  export interface ProvidedContext {
    sandbox: { root: string; inventory: string; image: string; dir: string }
  }
}
