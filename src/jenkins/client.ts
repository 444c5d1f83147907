/**
 * Jenkins credentials-plugin client: create or update a "Secret text" credential over the REST API
 * (jenkinsci/credentials-plugin CredentialsStoreAction + plain-credentials StringCredentialsImpl).
 *
 * This file holds the operations; the parts live beside it:
 * - session.ts   transport: preemptive Basic auth, CSRF crumb + session cookie, one deadline, redaction;
 * - documents.ts store and credential paths, input checks, the credential XML, the JSON/XML answers;
 * - answers.ts   statuses and HTML pages mapped to errors, the two kinds of 404;
 * - html.ts      reading HTML pages and headers; types.ts the public types and error codes.
 *
 * - An update reads the credential's config.xml first: to learn whether it exists, to refuse to
 *   change a credential of another type, and to keep its scope and description.
 * - A 404 for a credential and for a store the user may not view look alike: the store's api/json
 *   tells them apart.
 * - Jenkins never gives a secret back, so success here means "Jenkins stored it"; whether the secret
 *   works can only be checked where it is used.
 *
 * The secret, the API token and the password never appear in an error, a message or a result.
 */
import { LabctlError } from '../errors.js'
import { redactText } from '../redact.js'
import { credentialMissing, expectDocument, expectEmpty, failure, notWhatWasExpected, storeMissing } from './answers.js'
import {
  checkCredentialId,
  checkDescription,
  checkSecret,
  createPath,
  credentialPath,
  listPath,
  parseCredentialList,
  parseCredentialXml,
  parseStore,
  secretTextXml,
  shortClass,
  type CurrentCredential,
  type ParsedStore,
} from './documents.js'
import { openSession, type Session } from './session.js'
import {
  JenkinsErrorCode,
  STRING_CREDENTIALS_CLASS,
  type JenkinsCredentialRef,
  type JenkinsCredentialSummary,
  type JenkinsStoreRef,
  type UpdateSecretTextOptions,
  type UpdateSecretTextResult,
} from './types.js'

export { parseStore, secretTextXml } from './documents.js'
export { JenkinsErrorCode, STRING_CREDENTIALS_CLASS } from './types.js'
export type {
  JenkinsConnection,
  JenkinsCredentialRef,
  JenkinsCredentialSummary,
  JenkinsStore,
  JenkinsStoreRef,
  UpdateSecretTextOptions,
  UpdateSecretTextResult,
} from './types.js'

/** Sets the secret of a "Secret text" credential, creating it first when `create` is set. */
export async function updateSecretText(opts: UpdateSecretTextOptions): Promise<UpdateSecretTextResult> {
  const started = performance.now()
  const store = parseStore(opts.store)
  const id = checkCredentialId(opts.credentialId)
  checkSecret(opts.secret)
  checkDescription(opts.description)
  const s = openSession(opts, [opts.secret])
  return s.run(async () => {
    const cred = credentialPath(store, id)
    const done = (action: UpdateSecretTextResult['action'], scope: string, description: string): UpdateSecretTextResult => ({
      action,
      store: opts.store,
      credentialId: id,
      credentialUrl: s.urlOf(cred),
      scope,
      description,
      requests: s.requests,
      durationMs: Math.round(performance.now() - started),
    })

    if (s.authKind === 'password') await s.fetchCrumb()
    const current = await readCredential(s, store, id)

    if (current === undefined) {
      if (!opts.create) throw await missingCredential(s, store, id)
      const description = opts.description ?? ''
      const what = `creating credential ${id} in ${store.label}`
      const res = await s.send('POST', createPath(store), what, { xml: secretTextXml({ scope: 'GLOBAL', id, description, secret: opts.secret }) })
      if (res.status === 200) {
        expectEmpty(s, res, what)
        return done('created', 'GLOBAL', description)
      }
      if (res.status === 404) throw storeMissing(s, store)
      if (res.status === 409) {
        throw new LabctlError(`credential ${id} already exists in ${store.label} (409)`, {
          code: JenkinsErrorCode.Conflict,
          suggestion: `Run again without --create to update it; if it still looks missing, check that ${s.user} may view it (Credentials/View)`,
        })
      }
      throw failure(s, res, what, store)
    }

    if (current.className !== STRING_CREDENTIALS_CLASS) {
      throw new LabctlError(`credential ${id} in ${store.label} is of type ${shortClass(current.className)}, not "Secret text"`, {
        code: JenkinsErrorCode.WrongType,
        suggestion: 'Use another credential id, or delete that credential in Jenkins first: labctl never changes the type of a credential',
      })
    }
    const scope = current.scope || 'GLOBAL'
    const description = opts.description ?? current.description
    checkDescription(description)
    const what = `updating credential ${id} in ${store.label}`
    const res = await s.send('POST', cred, what, { xml: secretTextXml({ scope, id, description, secret: opts.secret }) })
    if (res.status === 200) {
      expectEmpty(s, res, what)
      return done('updated', scope, description)
    }
    if (res.status === 404) throw await missingCredential(s, store, id)
    throw failure(s, res, what, store)
  })
}

/** Whether the credential exists in the store. A missing or invisible store is an error (JENKINS_STORE_NOT_FOUND). */
export async function credentialExists(opts: JenkinsCredentialRef): Promise<boolean> {
  const store = parseStore(opts.store)
  const id = checkCredentialId(opts.credentialId)
  const s = openSession(opts, [])
  return s.run(async () => {
    if ((await readCredential(s, store, id)) !== undefined) return true
    await probeStore(s, store) // throws when the store itself is the 404
    return false
  })
}

/** The credentials of a store's global domain (id, type name, description). */
export async function listCredentials(opts: JenkinsStoreRef): Promise<JenkinsCredentialSummary[]> {
  const store = parseStore(opts.store)
  const s = openSession(opts, [])
  return s.run(() => probeStore(s, store))
}

/** Replaces every spelling of every sensitive value with the one redaction marker (the one redactor). */
export function redactSecrets(text: string, values: readonly string[]): string {
  return redactText(text, values)
}

/** GET config.xml → the credential's class, scope and description; undefined on 404. */
async function readCredential(s: Session, store: ParsedStore, id: string): Promise<CurrentCredential | undefined> {
  const what = `reading credential ${id} in ${store.label}`
  const res = await s.send('GET', credentialPath(store, id), what, { accept: 'application/xml' })
  if (res.status === 404) return undefined
  if (res.status !== 200) throw failure(s, res, what, store)
  expectDocument(s, res, 'XML', what)
  const doc = parseCredentialXml(res.body)
  if ('expected' in doc) throw notWhatWasExpected(s, res, doc.expected, what)
  return doc.value
}

/** GET the store's api/json: its credentials, or JENKINS_STORE_NOT_FOUND when the store is the 404. */
async function probeStore(s: Session, store: ParsedStore): Promise<JenkinsCredentialSummary[]> {
  const what = `listing ${store.label}`
  const res = await s.send('GET', listPath(store), what, { accept: 'application/json' })
  if (res.status === 404) throw storeMissing(s, store)
  if (res.status !== 200) throw failure(s, res, what, store)
  expectDocument(s, res, 'JSON', what)
  const list = parseCredentialList(res.body)
  if ('expected' in list) throw notWhatWasExpected(s, res, list.expected, what)
  return list.value
}

async function missingCredential(s: Session, store: ParsedStore, id: string): Promise<LabctlError> {
  await probeStore(s, store) // throws if the store is what is missing
  return credentialMissing(store, id)
}
