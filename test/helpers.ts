import { execa, type Result } from 'execa'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const ROOT = join(fileURLToPath(import.meta.url), '..', '..')
export const LABCTL = join(ROOT, 'bin', 'labctl')

/** Runs the real labctl binary (the built one), never throwing; stdin closed unless given. */
export async function labctl(args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<Result> {
  return execa(LABCTL, args, {
    reject: false,
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
    ...(opts.input !== undefined ? { input: opts.input } : { stdin: 'ignore' }),
    timeout: opts.timeoutMs ?? 60_000,
  }) as unknown as Promise<Result>
}

export function parseJson<T = Record<string, unknown>>(text: string): T {
  try {
    return JSON.parse(text) as T
  } catch {
    throw new Error(`not JSON: ${text.slice(0, 500)}`)
  }
}
