// Registry credentials from where the usual tools keep them: REGISTRY_AUTH_FILE (podman, skopeo, buildah),
// else $DOCKER_CONFIG/config.json, else ~/.docker/config.json. Never from a flag; never printed.
import { existsSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { LabctlError, UsageError } from '../errors.js'
import { FileReadError, readBounded } from '../fs/read-bounded.js'

export type Credentials = { username: string; password: string }
export type AuthSource = { file?: string; lookup: (registry: string) => Credentials | undefined }

type AuthEntry = { auth?: string; username?: string; password?: string; identitytoken?: string }
type AuthFile = { auths?: Record<string, AuthEntry>; credHelpers?: Record<string, string>; credsStore?: string }

/** The auth file in effect (or none): REGISTRY_AUTH_FILE wins, then DOCKER_CONFIG, then ~/.docker/config.json. */
export function authFilePath(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.REGISTRY_AUTH_FILE) return env.REGISTRY_AUTH_FILE
  const docker = join(env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker'), 'config.json')
  return existsSync(docker) ? docker : undefined
}

const keysFor = (registry: string): string[] => {
  const hub = registry === 'docker.io' || registry === 'index.docker.io' || registry === 'registry-1.docker.io'
  const names = hub ? ['docker.io', 'index.docker.io', 'https://index.docker.io/v1/', 'registry-1.docker.io'] : [registry]
  return names.flatMap((n) => [n, `https://${n}`, `http://${n}`, `https://${n}/v1/`, `https://${n}/v2/`])
}

export function loadAuth(env: NodeJS.ProcessEnv = process.env): AuthSource {
  const file = authFilePath(env)
  if (!file) return { lookup: () => undefined }
  let data: AuthFile
  try {
    data = JSON.parse(readBounded(file, 'registry-auth').toString('utf8')) as AuthFile
  } catch (err) {
    // Over the cap, a device or a FIFO that never writes: the bounded reader's own one line says which.
    if (err instanceof FileReadError && err.reason !== 'ENOENT') throw err
    const code = err instanceof FileReadError ? err.reason : (err as NodeJS.ErrnoException).code
    throw new UsageError(`registry auth file ${file} ${code === 'ENOENT' ? 'does not exist' : code ? `cannot be read (${code})` : 'is not valid JSON'}`, {
      suggestion: env.REGISTRY_AUTH_FILE ? 'fix REGISTRY_AUTH_FILE or unset it' : `fix ${file} (e.g. \`docker login\` again)`,
    })
  }
  return {
    file,
    lookup: (registry) => {
      for (const k of keysFor(registry)) {
        const e = data.auths?.[k]
        if (!e) continue
        if (e.identitytoken) {
          throw new LabctlError(`the credentials for ${registry} in ${file} are an identity token, which labctl does not use`, {
            suggestion: 'log in with a username and password (or a registry access token as the password)',
          })
        }
        if (e.username && e.password) return { username: e.username, password: e.password }
        if (e.auth) {
          const plain = Buffer.from(e.auth, 'base64').toString('utf8')
          const i = plain.indexOf(':')
          if (i > 0) return { username: plain.slice(0, i), password: plain.slice(i + 1) }
          throw new UsageError(`the "auth" entry for ${registry} in ${file} is not base64 of user:password`, { suggestion: `log in to ${registry} again` })
        }
      }
      if (data.credHelpers?.[registry] || (data.credsStore && !data.auths?.[registry])) {
        // A credential helper may hold it; labctl reads only plain entries (no helper binary is run).
        return undefined
      }
      return undefined
    },
  }
}

/** `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`. */
export function parseChallenge(header: string): { scheme: string; params: Record<string, string> } | undefined {
  const m = /^\s*(\w+)\s*(.*)$/s.exec(header)
  if (!m) return undefined
  const params: Record<string, string> = {}
  const re = /(\w+)\s*=\s*(?:"([^"]*)"|([^,\s]*))/g
  for (let p = re.exec(m[2]!); p; p = re.exec(m[2]!)) params[p[1]!.toLowerCase()] = p[2] ?? p[3] ?? ''
  return { scheme: m[1]!.toLowerCase(), params }
}

export const basicHeader = (c: Credentials): string => `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`
