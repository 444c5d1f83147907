// The Redis password: a secret like the token. Locally it lives in the secrets dir (file redis-password,
// 0600); on a scanner host only inside TRIVY_CACHE_BACKEND of the 0600 env file; never in the inventory,
// an argv, output or a log.
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { inventoryPath, type LoadedInventory } from '../inventory/load.js'
import type { Inventory } from '../inventory/schema.js'
import { readBoundedText } from '../fs/read-bounded.js'
import { LabctlError } from '../errors.js'

export const REDIS_PASSWORD_FILE = 'redis-password'

export const usesRedis = (inv: Inventory): boolean => /^rediss?:\/\//i.test(inv.trivy.cacheBackend)

export function redisPasswordPath(loaded: LoadedInventory): string {
  return join(inventoryPath(loaded, loaded.inventory.secrets.dir), REDIS_PASSWORD_FILE)
}

/** The password for the inventory's Redis cache, or undefined (no Redis, or a Redis without a password). */
export function loadRedisPassword(loaded: LoadedInventory): string | undefined {
  if (!usesRedis(loaded.inventory)) return undefined
  const path = redisPasswordPath(loaded)
  if (!existsSync(path)) return undefined
  const text = readBoundedText(path, 'token').trim()
  if (!text || /[\s"'\\$`@/:%]/.test(text)) {
    throw new LabctlError(`${path} must hold one line without spaces, quotes, $, @, /, : or %`, { code: 'BAD_REDIS_PASSWORD', suggestion: 'generate one with `openssl rand -hex 32` and set it as the Redis requirepass too' })
  }
  return text
}

/** TRIVY_CACHE_BACKEND's value: the inventory's URL with the password put in (redis://:PASSWORD@host:port). */
export function cacheBackendWithPassword(url: string, password: string | undefined): string {
  if (!password || !/^rediss?:\/\//i.test(url)) return url
  return url.replace(/^(rediss?:\/\/)/i, `$1:${password}@`)
}
