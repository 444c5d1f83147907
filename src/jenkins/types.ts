/** The Jenkins client's public types and error codes (src/jenkins/client.ts re-exports them). */

export const STRING_CREDENTIALS_CLASS = 'org.jenkinsci.plugins.plaincredentials.impl.StringCredentialsImpl'

/** `'system'` (the global domain of Jenkins' own store) or `'folder:<a>/<b>'` (a folder's store). */
export type JenkinsStore = 'system' | `folder:${string}`

export type JenkinsConnection = {
  /** Jenkins root URL, e.g. `https://jenkins.example.com/` or `https://host/jenkins`; no user info. */
  url: string
  user: string
  /** API token (preferred). Give at most one of apiToken and password; with neither, requests are anonymous. */
  apiToken?: string | undefined
  password?: string | undefined
  /** Budget for the whole operation, all requests together (ms). */
  timeoutMs: number
  /** PEM CA bundle to verify Jenkins' TLS certificate against (default: the system store). */
  caFile?: string | undefined
  /** Lab DNS servers to resolve Jenkins' name with (default: the system resolver). */
  dnsServers?: string[] | undefined
}

export type JenkinsStoreRef = JenkinsConnection & { store: JenkinsStore }
export type JenkinsCredentialRef = JenkinsStoreRef & { credentialId: string }

export type UpdateSecretTextOptions = JenkinsCredentialRef & {
  secret: string
  /** New description; when left out an update keeps the current one (a create uses ''). */
  description?: string | undefined
  /** Create the credential (scope GLOBAL) when it does not exist; default: fail with JENKINS_CREDENTIAL_NOT_FOUND. */
  create?: boolean | undefined
}

export type UpdateSecretTextResult = {
  action: 'created' | 'updated'
  store: JenkinsStore
  credentialId: string
  /** URL of the credential's config.xml (no user info, no secret). */
  credentialUrl: string
  scope: string
  description: string
  /** HTTP requests made. */
  requests: number
  durationMs: number
}

export type JenkinsCredentialSummary = { id: string; typeName: string; description: string }

/** `LabctlError.code` values thrown by the client (besides USAGE for bad input). */
export const JenkinsErrorCode = {
  /** 401: wrong user, API token or password. */
  Auth: 'JENKINS_AUTH',
  /** 403: authenticated but lacking a permission, or no credentials sent. */
  Forbidden: 'JENKINS_FORBIDDEN',
  /** 403 "No valid crumb was included in the request". */
  Crumb: 'JENKINS_CRUMB',
  /** 404 for the credential while its store is there. */
  CredentialNotFound: 'JENKINS_CREDENTIAL_NOT_FOUND',
  /** 404 for the store: no such folder, or the user may not view it. */
  StoreNotFound: 'JENKINS_STORE_NOT_FOUND',
  /** 409 on create: the id exists. */
  Conflict: 'JENKINS_CONFLICT',
  /** The credential exists but is not "Secret text". */
  WrongType: 'JENKINS_WRONG_TYPE',
  /** 5xx. */
  Server: 'JENKINS_SERVER_ERROR',
  /** HTML where XML/JSON was expected, unparsable answers, redirects, other statuses. */
  BadResponse: 'JENKINS_BAD_RESPONSE',
  Timeout: 'JENKINS_TIMEOUT',
  Unreachable: 'JENKINS_UNREACHABLE',
} as const
