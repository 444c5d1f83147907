// What src/db needs of an SSH session: the run's `Remote` (opened by the command) satisfies it.
import type { Remote } from '../ssh/index.js'

export type DbRemote = Pick<Remote, 'run' | 'writeFile'>
