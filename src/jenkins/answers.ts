/**
 * Jenkins' answers mapped to errors: statuses (401, 403 crumb / anonymous / permission, 3xx, 5xx),
 * HTML pages where XML, JSON or an empty body was expected, and the two kinds of 404 (a missing
 * credential, a missing or invisible store). Every text taken from an answer goes through the
 * session's redactor and is shortened.
 */
import { LabctlError, oneLine } from '../errors.js'
import type { HttpResult } from '../net/http.js'
import type { ParsedStore } from './documents.js'
import { headerOf, looksLikeHtml, stripQuery } from './html.js'
import type { Session } from './session.js'
import { JenkinsErrorCode } from './types.js'

/** An answer that is not a success of the request `what` (e.g. "reading credential x in the system store"). */
export function failure(s: Session, res: HttpResult, what: string, store?: ParsedStore): LabctlError {
  const status = res.status
  const host = s.host
  if (status === 401) {
    const what401 = s.authKind === 'password' ? 'password' : 'API token'
    return new LabctlError(
      s.authKind === 'none' ? `Jenkins at ${host} asks for credentials (401)` : `Jenkins rejected user ${s.user}'s ${what401} (401)`,
      {
        code: JenkinsErrorCode.Auth,
        suggestion:
          s.authKind === 'password'
            ? `Check the user name and password, or better use an API token (created under ${s.urlOf(`/user/${encodeURIComponent(s.user)}/configure`)})`
            : `Check the user name and API token; create a new token under ${s.urlOf(`/user/${encodeURIComponent(s.user)}/configure`)} if it was revoked`,
      },
    )
  }
  if (status === 403) return forbidden(s, res, what, store)
  if (status >= 300 && status < 400) {
    const location = headerOf(res, 'location')
    const to = location ? ` to ${oneLine(s.redact(stripQuery(location)), 160)}` : ''
    return new LabctlError(`Jenkins at ${host} redirected ${what}${to} (${status})`, {
      code: JenkinsErrorCode.BadResponse,
      suggestion: 'Use the Jenkins root URL exactly as Jenkins knows it (https? context path such as /jenkins?)',
    })
  }
  const excerpt = s.excerpt(res)
  const tail = excerpt ? `: ${excerpt}` : ''
  if (status === 502 || status === 503 || status === 504) {
    return new LabctlError(`Jenkins at ${host} is unavailable (${status}) while ${what}${tail}`, {
      code: JenkinsErrorCode.Server,
      suggestion: 'Jenkins may be starting or restarting, or the proxy in front of it cannot reach it: retry in a minute, then check the proxy and Jenkins',
    })
  }
  if (status >= 500) {
    return new LabctlError(`Jenkins failed (${status}) while ${what}${tail}`, {
      code: JenkinsErrorCode.Server,
      suggestion: 'Look at the Jenkins system log (Manage Jenkins → System Log); a failure on create or update can mean Jenkins cannot read the credential (is the Plain Credentials plugin installed?)',
    })
  }
  return new LabctlError(`unexpected answer from Jenkins at ${host} (${status}) while ${what}${tail}`, {
    code: JenkinsErrorCode.BadResponse,
    suggestion: 'Check the Jenkins URL and that the Credentials plugin is installed',
  })
}

/** 403: a missing or bad crumb, no credentials at all, or a permission the user lacks. */
function forbidden(s: Session, res: HttpResult, what: string, store: ParsedStore | undefined): LabctlError {
  const body = s.redact(res.body)
  if (/No valid crumb/i.test(body)) {
    return new LabctlError(`Jenkins refused ${what}: no valid CSRF crumb (403)`, {
      code: JenkinsErrorCode.Crumb,
      suggestion: 'Use an API token instead of a password (API-token requests need no crumb); if a proxy sits in front of Jenkins, make sure it keeps the session cookie',
    })
  }
  if (s.authKind === 'none') {
    return new LabctlError(`Jenkins at ${s.host} refused anonymous access (403): no credentials were sent`, {
      code: JenkinsErrorCode.Forbidden,
      suggestion: 'Give a Jenkins user and an API token',
    })
  }
  const missing = /is missing the ([\w ]+\/[\w ]+) permission/.exec(body)
  const where = store ? ` on ${store.label}` : ''
  return new LabctlError(missing ? `Jenkins user ${s.user} lacks the ${missing[1]} permission${where} (403)` : `Jenkins denied user ${s.user} ${what} (403)`, {
    code: JenkinsErrorCode.Forbidden,
    suggestion: `Ask a Jenkins admin to grant ${s.user} Credentials/View, Create and Update${where}`,
  })
}

export function htmlInstead(s: Session, res: HttpResult, expected: string, what: string): LabctlError {
  const excerpt = s.excerpt(res)
  return new LabctlError(`Jenkins at ${s.host} answered with an HTML page${excerpt ? ` ("${excerpt}")` : ''} where ${expected} was expected while ${what}`, {
    code: JenkinsErrorCode.BadResponse,
    suggestion: 'Check that the URL is the Jenkins root and not a login page or proxy; a single sign-on proxy in front of Jenkins must let API requests through',
  })
}

export function notWhatWasExpected(s: Session, res: HttpResult, expected: string, what: string): LabctlError {
  const excerpt = s.excerpt(res)
  return new LabctlError(`Jenkins at ${s.host} did not answer with ${expected} while ${what}${excerpt ? `: ${excerpt}` : ''}`, {
    code: JenkinsErrorCode.BadResponse,
    suggestion: 'Check that the URL is the Jenkins root URL and that the Credentials plugin is installed',
  })
}

/**
 * Create and update answer 200 with an empty body; an HTML page with 200 is a login page or proxy,
 * not success. An empty body is success whatever its Content-Type (a container may label it text/html).
 */
export function expectEmpty(s: Session, res: HttpResult, what: string): void {
  if (res.body.trim() !== '' && looksLikeHtml(res)) throw htmlInstead(s, res, 'an empty answer', what)
}

/** A 200 answer that must be a document (`expected`: "XML", "JSON"): HTML is a login page or proxy. */
export function expectDocument(s: Session, res: HttpResult, expected: string, what: string): void {
  if (looksLikeHtml(res)) throw htmlInstead(s, res, expected, what)
}

/** 404 for the store itself: no such folder, or the user (or anonymous) may not view its credentials. */
export function storeMissing(s: Session, store: ParsedStore): LabctlError {
  const who = s.authKind === 'none' ? 'anonymous requests' : `user ${s.user}`
  const message =
    store.kind === 'system'
      ? `Jenkins shows ${who} no system credentials store (404)`
      : `Jenkins has no folder ${store.folder.join('/')}, or ${who} may not view its credentials (404)`
  const view = s.authKind === 'none' ? 'that a Jenkins user and API token are given (anonymous requests seldom see credentials)' : `that ${s.user} has Credentials/View`
  return new LabctlError(message, {
    code: JenkinsErrorCode.StoreNotFound,
    suggestion:
      store.kind === 'system'
        ? `Check the Jenkins URL (root URL, with any context path such as /jenkins) and ${view} there`
        : `Check the folder's full name (folder:a/b is the folder at /job/a/job/b) and ${view} on it`,
  })
}

/** 404 for the credential while its store answers. */
export function credentialMissing(store: ParsedStore, id: string): LabctlError {
  return new LabctlError(`credential ${id} does not exist in ${store.label} (404)`, {
    code: JenkinsErrorCode.CredentialNotFound,
    suggestion: `Pass --create to create it, or check the credential id and the store (folder stores are "folder:<a>/<b>")`,
  })
}
