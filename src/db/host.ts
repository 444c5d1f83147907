// The only place src/db reaches a scanner host: a tiny adapter over the SSH layer, so that moving from the
// run-wide pool to an explicit session object is a change here (or a `remote` passed in), not everywhere.
import type { RunOptions, RunResult, SshHost, WriteFileOptions } from '../ssh/index.js'
import { run, writeFile } from '../ssh/index.js'

export type DbRemote = {
  run(host: SshHost, argv: readonly string[], opts: RunOptions): Promise<RunResult>
  writeFile(host: SshHost, path: string, content: Buffer, opts: WriteFileOptions): Promise<void>
}

/** The run's SSH pool (configured by the command's useSsh). */
export const poolRemote: DbRemote = { run, writeFile }
