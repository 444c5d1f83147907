// What every per-host operation over SSH shares: its options, and the splitter for a remote script's
// `@@name`-sectioned output (one SSH round trip, several answers).
import type { LoadedInventory } from '../inventory/load.js'
import type { ScannerHost } from '../inventory/schema.js'
import type { Remote } from '../ssh/index.js'

/** Splits a remote script's output at `@@name` marker lines (one SSH round trip, several answers). */
export function sections(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  let name = 'head'
  for (const line of text.split('\n')) {
    const m = /^@@(\w+)$/.exec(line)
    if (m) {
      name = m[1]!
      out[name] = ''
    } else out[name] = `${out[name] ?? ''}${line}\n`
  }
  return out
}

/** What hostStatus and hostCheck read: one host of the inventory, over the run's SSH session. */
export type HostOpOptions = {
  loaded: LoadedInventory
  host: ScannerHost
  /** The run's SSH session. */
  remote: Remote
  /** Timeout of the remote command (and of the HTTP calls) in ms. */
  timeoutMs: number
}
