// Wait until the scanner answers /healthz: at one or more bases (a host directly, then the edge, so
// HAProxy's own health check has seen the backend come back), bounded by a deadline and a signal.
import type { Dispatcher } from 'undici'
import { describeNetError } from '../net/http.js'
import { getHealthz } from './api.js'

export type HealthWait = { healthy: boolean; waitedMs: number; polls: number; last: string }

/** One /healthz probe: a reason when it is not 200 "ok"-ish, undefined when healthy. */
async function probe(base: string, dispatcher: Dispatcher, timeoutMs: number): Promise<string | undefined> {
  try {
    const r = await getHealthz(base, { dispatcher, timeoutMs })
    return r.status === 200 ? undefined : `${base}/healthz answered ${r.status}`
  } catch (err) {
    return `${base}/healthz: ${describeNetError(err, timeoutMs)}`
  }
}

/**
 * Polls every base in order until all answer 200 in the same round, or `waitMs` has passed, or the signal
 * fires (then it throws the signal's reason). Never throws for an unhealthy server: the caller words that.
 */
export async function waitHealthy(o: {
  bases: readonly string[]
  dispatcher: Dispatcher
  waitMs: number
  intervalMs?: number
  probeTimeoutMs?: number
  signal?: AbortSignal | undefined
}): Promise<HealthWait> {
  const started = Date.now()
  const bases = [...new Set(o.bases)]
  const interval = o.intervalMs ?? 100
  const probeTimeout = o.probeTimeoutMs ?? 2000
  let polls = 0
  let last = 'not probed yet'
  for (;;) {
    if (o.signal?.aborted) throw o.signal.reason
    polls += 1
    let bad: string | undefined
    for (const b of bases) {
      bad = await probe(b, o.dispatcher, Math.min(probeTimeout, Math.max(100, o.waitMs - (Date.now() - started))))
      if (bad) break
    }
    if (!bad) return { healthy: true, waitedMs: Date.now() - started, polls, last: 'ok' }
    last = bad
    const left = o.waitMs - (Date.now() - started)
    if (left <= 0) return { healthy: false, waitedMs: Date.now() - started, polls, last }
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, Math.min(interval, left))
      function done(): void {
        clearTimeout(t)
        o.signal?.removeEventListener('abort', done)
        resolve()
      }
      o.signal?.addEventListener('abort', done, { once: true })
    })
  }
}
