import { it } from 'vitest'
import { startSshd } from './sshd.js'
import { SshPool } from '../../src/ssh/index.js'
it('smoke', async () => {
  const d = await startSshd({ logLevel: 'DEBUG3' })
  const pool = new SshPool({ env: {}, sshConfigFile: null, acceptNewHostKey: true })
  const t = { host: '127.0.0.1', port: d.port, identityFile: d.clientKey, knownHostsFile: d.dir + '/kh' }
  await pool.run(t, ['sh', '-c', 'echo hi >&2; sleep 43.5'], { timeoutMs: 500 }).catch((e) => console.log(e.message)); console.log(await pool.run(t, ['sh','-c','echo x >&2']))
  await new Promise((r) => setTimeout(r, 500))
  console.log(d.log().split('\n').filter(l => /signal|killpg/i.test(l)).join('\n'))
  await pool.closeAll()
  await d.stop()
})
