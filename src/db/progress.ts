// Rendering of mirror progress on stderr: a redrawn bar on a terminal, plain lines otherwise.
import type { MirrorEvent } from './mirror.js'

export const size = (n: number): string =>
  n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GiB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`

export const short = (digest: string): string => digest.slice(0, 19)

/** A progress sink: `write` is stderr; `tty` picks the bar. Returns the event handler and a finisher. */
export function progressRenderer(write: (s: string) => void, tty: boolean, now: () => number = Date.now): { on: (e: MirrorEvent) => void; end: () => void } {
  let barShown = false
  let last = 0
  const clear = (): void => {
    if (barShown) write('\r\x1b[K')
    barShown = false
  }
  const line = (s: string): void => {
    clear()
    write(`${s}\n`)
  }
  return {
    on: (e) => {
      switch (e.type) {
        case 'artifact':
          return line(`${e.key}: ${e.source} → ${e.target}`)
        case 'blob':
          if (e.action === 'present') return line(`  skip     ${short(e.digest)} ${e.title} (${size(e.size)}, already there)`)
          if (e.action === 'download') return line(`  fetch    ${short(e.digest)} ${e.title} (${size(e.size)})`)
          return line(`  ${e.action === 'mounted' ? 'mounted ' : 'pushed  '} ${short(e.digest)} ${e.title} (${size(e.size)})`)
        case 'bytes': {
          if (!tty) return
          const t = now()
          if (e.done < e.total && t - last < 100) return
          last = t
          const frac = e.total ? Math.min(1, e.done / e.total) : 1
          const width = 30
          const fill = Math.round(frac * width)
          write(`\r\x1b[K  ${e.phase === 'download' ? 'fetch' : 'push '} [${'#'.repeat(fill)}${'-'.repeat(width - fill)}] ${(frac * 100).toFixed(0).padStart(3)}% ${size(e.done)}/${size(e.total)} ${short(e.digest)}`)
          barShown = true
          return
        }
        case 'tagged':
          return line(`  tagged   ${e.target}@${short(e.digest)}`)
        case 'up-to-date':
          return line(`  up to date ${e.target}@${short(e.digest)}`)
      }
    },
    end: clear,
  }
}
