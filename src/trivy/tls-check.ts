import { checkServerIdentity, connect, type PeerCertificate } from 'node:tls'
import { readBoundedText } from '../fs/read-bounded.js'

export type TlsInfo = {
  authorized: boolean
  authorizationError?: string
  nameError?: string
  subject: string
  issuer: string
  altNames: string
  validFrom: Date
  validTo: Date
  daysLeft: number
}

/** Connects to ADDRESS:PORT presenting NAME (SNI) and reads the chain verdict, name match and expiry. */
export function inspectTls(opts: { address: string; port: number; servername: string; caFile?: string | undefined; timeoutMs: number }): Promise<TlsInfo> {
  const ca = opts.caFile ? readBoundedText(opts.caFile, 'ca-bundle') : undefined
  return new Promise((resolve, reject) => {
    const sock = connect({ host: opts.address, port: opts.port, servername: opts.servername, rejectUnauthorized: false, ...(ca ? { ca } : {}) })
    sock.setTimeout(opts.timeoutMs, () =>
      // Still connecting: no TCP answer at all (unreachable, filtered), which is not a stalled handshake.
      sock.destroy(sock.connecting ? Object.assign(new Error('no TCP connection'), { code: 'UND_ERR_CONNECT_TIMEOUT' }) : Object.assign(new Error(`TLS handshake timed out after ${opts.timeoutMs} ms`), { code: 'ETIMEDOUT' })),
    )
    sock.once('error', reject)
    sock.once('secureConnect', () => {
      const cert = sock.getPeerCertificate() as PeerCertificate
      const nameErr = checkServerIdentity(opts.servername, cert)
      const validTo = new Date(cert.valid_to)
      const info: TlsInfo = {
        authorized: sock.authorized,
        subject: String(cert.subject?.CN ?? ''),
        issuer: String(cert.issuer?.CN ?? ''),
        altNames: cert.subjectaltname ?? '',
        validFrom: new Date(cert.valid_from),
        validTo,
        daysLeft: Math.floor((validTo.getTime() - Date.now()) / 86_400_000),
        ...(sock.authorizationError ? { authorizationError: String(sock.authorizationError) } : {}),
        ...(nameErr ? { nameError: nameErr.message } : {}),
      }
      sock.end()
      resolve(info)
    })
  })
}
