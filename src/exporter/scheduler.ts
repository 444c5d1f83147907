// Runs each probe on its own timer and keeps its last result. A scrape only reads the cache, so the
// scan rate is one canary per target per interval whatever the scrape rate. Each run has a deadline;
// a run still going when the next is due is not doubled (the next is skipped and counted); a slow
// target only delays itself.
import { oneLine } from '../errors.js'
import { redactText } from '../redact.js'
import type { ProbeKind } from './model.js'

export type JobSpec<T> = {
  target: string
  kind: ProbeKind
  intervalMs: number
  /** The run's deadline: after it the run counts as an error and its signal is aborted. */
  timeoutMs: number
  run: (signal: AbortSignal) => Promise<T & { errors: string[] }>
}

export type JobState<T> = {
  target: string
  kind: ProbeKind
  /** The last run's observation; undefined when the run as a whole failed (no stale values are served). */
  last?: T
  /** The last run gave a verdict on everything it probes. */
  ok: boolean
  errors: string[]
  durationMs?: number
  finishedAt?: number
  runs: number
  failures: number
  skipped: number
}

type Job<T> = {
  spec: JobSpec<T>
  state: JobState<T>
  /** Until the state is updated (the run finished or hit its deadline). */
  running?: Promise<JobState<T>>
  /** Until the probe function itself returned: a run past its deadline may still hold a connection. */
  inner?: Promise<unknown>
  timer?: NodeJS.Timeout
}

export type SchedulerOptions = {
  /** Progress and errors, one line each (already redacted). */
  log?: (line: string) => void
  secrets?: string[]
  /** Spread the first runs of the jobs over this many ms (default 250 ms per job, at most the interval). */
  staggerMs?: number
  now?: () => number
}

export class Scheduler {
  private readonly jobs = new Map<string, Job<unknown>>()
  private readonly aborts = new Set<AbortController>()
  private stopped = true
  private readonly now: () => number

  constructor(
    specs: Array<JobSpec<unknown>>,
    private readonly opts: SchedulerOptions = {},
  ) {
    this.now = opts.now ?? Date.now
    for (const spec of specs) {
      const key = Scheduler.key(spec.target, spec.kind)
      this.jobs.set(key, { spec, state: { target: spec.target, kind: spec.kind, ok: false, errors: [], runs: 0, failures: 0, skipped: 0 } })
    }
  }

  static key(target: string, kind: ProbeKind): string {
    return `${kind}:${target}`
  }

  start(): void {
    if (!this.stopped) return
    this.stopped = false
    let i = 0
    for (const job of this.jobs.values()) {
      const delay = Math.min(job.spec.intervalMs, (this.opts.staggerMs ?? 250) * i++)
      this.arm(job, delay)
    }
  }

  private arm(job: Job<unknown>, delayMs: number): void {
    if (this.stopped) return
    job.timer = setTimeout(() => {
      job.timer = undefined
      if (job.running || job.inner) {
        job.state.skipped += 1
        this.log(`${job.spec.kind} probe of ${job.spec.target}: previous run still going, this run skipped`)
      } else void this.runJob(job)
      this.arm(job, job.spec.intervalMs)
    }, delayMs)
  }

  /** Every job's current state (a snapshot: scrapes read it, never start a probe). */
  states(): Array<JobState<unknown>> {
    return [...this.jobs.values()].map((j) => j.state)
  }

  state(target: string, kind: ProbeKind): JobState<unknown> | undefined {
    return this.jobs.get(Scheduler.key(target, kind))?.state
  }

  has(target: string, kind: ProbeKind): boolean {
    return this.jobs.has(Scheduler.key(target, kind))
  }

  /**
   * The job's result no older than `maxAgeMs`: the cached one when fresh enough, else a run now — shared
   * with a run already going, so concurrent callers never start two.
   */
  async fresh(target: string, kind: ProbeKind, maxAgeMs: number): Promise<JobState<unknown>> {
    const job = this.jobs.get(Scheduler.key(target, kind))
    if (!job) throw new Error(`no ${kind} probe for ${target}`)
    if (job.running) return job.running
    if (job.inner) return job.state
    if (job.state.finishedAt !== undefined && this.now() - job.state.finishedAt <= maxAgeMs) return job.state
    if (this.stopped) return job.state
    return this.runJob(job)
  }

  private runJob(job: Job<unknown>): Promise<JobState<unknown>> {
    const ac = new AbortController()
    this.aborts.add(ac)
    const started = performance.now()
    const { spec, state } = job
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        ac.abort()
        reject(new Error(`timed out after ${spec.timeoutMs} ms`))
      }, spec.timeoutMs)
    })
    const inner = Promise.resolve().then(() => spec.run(ac.signal))
    job.inner = inner
    inner.then(
      () => (job.inner = job.inner === inner ? undefined : job.inner),
      () => (job.inner = job.inner === inner ? undefined : job.inner),
    )
    const attempt = Promise.race([inner, deadline])
    const done = attempt.then(
      (obs) => ({ obs, errors: obs.errors }),
      (err: unknown) => ({ obs: undefined, errors: [oneLine(err instanceof Error ? err.message : String(err), 300)] }),
    )
    const running = done.then(({ obs, errors }) => {
      clearTimeout(timer)
      this.aborts.delete(ac)
      const clean = errors.map((e) => oneLine(redactText(e, this.opts.secrets ?? []), 300))
      const wasOk = state.ok
      const before = state.errors.join('; ')
      state.runs += 1
      state.last = obs
      state.ok = clean.length === 0
      if (!state.ok) state.failures += 1
      state.errors = clean
      state.durationMs = Math.round(performance.now() - started)
      state.finishedAt = this.now()
      if (!state.ok && (wasOk || before !== clean.join('; ') || state.runs === 1)) this.log(`${spec.kind} probe of ${spec.target}: ${clean.join('; ')}`)
      else if (state.ok && !wasOk && state.runs > 1) this.log(`${spec.kind} probe of ${spec.target}: ok again`)
      job.running = undefined
      return state
    })
    job.running = running
    return running
  }

  private log(line: string): void {
    this.opts.log?.(oneLine(redactText(line, this.opts.secrets ?? []), 1000))
  }

  /** Stops the timers and cancels runs in progress; waits for them at most `graceMs`. */
  async stop(graceMs = 2000): Promise<void> {
    this.stopped = true
    for (const job of this.jobs.values()) {
      if (job.timer) clearTimeout(job.timer)
      job.timer = undefined
    }
    for (const ac of this.aborts) ac.abort()
    const running = [...this.jobs.values()].map((j) => j.running).filter((r): r is Promise<JobState<unknown>> => Boolean(r))
    let t: NodeJS.Timeout | undefined
    await Promise.race([Promise.allSettled(running), new Promise((r) => (t = setTimeout(r, graceMs)))])
    clearTimeout(t)
  }
}
