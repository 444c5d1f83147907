// A small streaming reader of (gzip'd) tar archives: each entry's name, type, size, its first bytes and,
// for small entries, its whole content. Enough to check a Trivy DB archive (exactly trivy.db + metadata.json,
// bbolt magic, metadata Version 2) without unpacking it, and to stop early. Bounded: never buffers more
// than `keepBytes` of one entry, and stops after `maxEntries`.
import { createGunzip } from 'node:zlib'
import type { Readable } from 'node:stream'
import { LabctlError } from '../errors.js'

export type TarEntry = { name: string; type: 'file' | 'dir' | 'other'; size: number; head: Buffer; data?: Buffer }

const parseOctal = (b: Buffer): number => {
  if (b[0]! & 0x80) {
    let n = 0
    for (let i = 1; i < b.length; i++) n = n * 256 + b[i]!
    return n
  }
  const s = b.toString('latin1').replace(/\0.*$/s, '').trim()
  return s ? parseInt(s, 8) : 0
}

const cstr = (b: Buffer): string => b.toString('utf8').replace(/\0.*$/s, '')

export async function* tarEntries(
  input: AsyncIterable<Buffer>,
  o: { headBytes?: number; keepBytes?: number; maxEntries?: number; what?: string } = {},
): AsyncGenerator<TarEntry> {
  const headBytes = o.headBytes ?? 4096
  const keepBytes = o.keepBytes ?? 1024 * 1024
  const maxEntries = o.maxEntries ?? 64
  const bad = (why: string): LabctlError => new LabctlError(`${o.what ?? 'archive'} is not a valid tar.gz: ${why}`, { code: 'BAD_ARCHIVE', suggestion: 'download the archive again (oras pull / labctl trivy db mirror --to-dir)' })
  let buf: Buffer = Buffer.alloc(0)
  let cur: { name: string; type: TarEntry['type']; size: number; consumed: number; head: Buffer[]; headLen: number; data?: Buffer[]; meta?: 'L' | 'x'; metaBuf?: Buffer[] } | undefined
  let longName: string | undefined
  let count = 0
  let ended = false
  const finish = (): TarEntry | undefined => {
    const c = cur!
    cur = undefined
    if (c.meta === 'L') {
      longName = cstr(Buffer.concat(c.metaBuf!))
      return undefined
    }
    if (c.meta === 'x') {
      const text = Buffer.concat(c.metaBuf!).toString('utf8')
      const m = /\d+ path=([^\n]*)\n/.exec(text)
      if (m) longName = m[1]
      return undefined
    }
    return { name: c.name, type: c.type, size: c.size, head: Buffer.concat(c.head), ...(c.data ? { data: Buffer.concat(c.data) } : {}) }
  }
  try {
    for await (const chunk of input) {
      buf = buf.length ? Buffer.concat([buf, chunk]) : chunk
      for (;;) {
        if (ended) break
        if (!cur) {
          if (buf.length < 512) break
          const h = buf.subarray(0, 512)
          buf = buf.subarray(512)
          if (h.every((x) => x === 0)) {
            ended = true
            break
          }
          let sum = 0
          for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 32 : h[i]!
          if (sum !== parseOctal(h.subarray(148, 156))) throw bad('header checksum mismatch')
          if (++count > maxEntries) throw bad(`more than ${maxEntries} entries`)
          const flag = String.fromCharCode(h[156]!)
          const prefix = h.subarray(257, 262).toString('latin1') === 'ustar' ? cstr(h.subarray(345, 500)) : ''
          const name = longName ?? (prefix ? `${prefix}/${cstr(h.subarray(0, 100))}` : cstr(h.subarray(0, 100)))
          longName = undefined
          const size = parseOctal(h.subarray(124, 136))
          const meta = flag === 'L' ? 'L' : flag === 'x' ? 'x' : undefined
          const type: TarEntry['type'] = flag === '0' || flag === '\0' ? 'file' : flag === '5' ? 'dir' : 'other'
          cur = { name, type, size, consumed: 0, head: [], headLen: 0, ...(meta ? { meta, metaBuf: [] } : size <= keepBytes ? { data: [] } : {}) }
          if (size === 0) {
            const e = finish()
            if (e) yield e
          }
          continue
        }
        const padded = Math.ceil(cur.size / 512) * 512
        if (!buf.length) break
        const take = Math.min(padded - cur.consumed, buf.length)
        const real = buf.subarray(0, Math.max(0, Math.min(take, cur.size - cur.consumed)))
        if (cur.meta) cur.metaBuf!.push(Buffer.from(real))
        else {
          if (cur.headLen < headBytes) {
            const h = real.subarray(0, headBytes - cur.headLen)
            cur.head.push(Buffer.from(h))
            cur.headLen += h.length
          }
          cur.data?.push(Buffer.from(real))
        }
        buf = buf.subarray(take)
        cur.consumed += take
        if (cur.consumed === padded) {
          const e = finish()
          if (e) yield e
        }
      }
      if (ended) return
    }
  } catch (err) {
    if (err instanceof LabctlError) throw err
    throw bad((err as Error).message)
  }
  if (cur) throw bad('truncated')
}

/** Entries of a gzip'd tar stream. */
export function tarGzEntries(stream: Readable, o: Parameters<typeof tarEntries>[1] = {}): AsyncGenerator<TarEntry> {
  const gunzip = createGunzip()
  stream.on('error', (e) => gunzip.destroy(e))
  return tarEntries(stream.pipe(gunzip) as AsyncIterable<Buffer>, o)
}
