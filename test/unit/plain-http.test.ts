import { describe, expect, it } from 'vitest'
import { plainHttpAddressAllowed, plainHttpRefusal } from '../../src/net/plain-http.js'

const policy = { networks: ['198.18.7.0/24', 'fd00:1::/64'], dnsServers: ['127.0.0.1:9'], dnsTimeoutMs: 200 }

describe('plain HTTP and the token', () => {
  it('loopback always; the listed networks only; everything else not', () => {
    expect(plainHttpAddressAllowed('127.0.0.1', [])).toBe(true)
    expect(plainHttpAddressAllowed('::1', [])).toBe(true)
    expect(plainHttpAddressAllowed('198.18.7.10', [])).toBe(false)
    expect(plainHttpAddressAllowed('198.18.7.10', policy.networks)).toBe(true)
    expect(plainHttpAddressAllowed('198.18.8.10', policy.networks)).toBe(false)
    expect(plainHttpAddressAllowed('fd00:1::5', policy.networks)).toBe(true)
    expect(plainHttpAddressAllowed('fd00:2::5', policy.networks)).toBe(false)
    expect(plainHttpAddressAllowed('not-an-address', policy.networks)).toBe(false)
  })

  it('says why it refuses, and never refuses HTTPS or --insecure', async () => {
    expect(await plainHttpRefusal(new URL('http://198.18.7.10:4954'), policy)).toBeUndefined()
    expect(await plainHttpRefusal(new URL('http://192.0.2.10:4954'), policy)).toBe(
      'refusing to send the token over plain HTTP to 192.0.2.10:4954 (not loopback, nor in trivy.plainHttpNetworks 198.18.7.0/24, fd00:1::/64)',
    )
    expect(await plainHttpRefusal(new URL('http://198.18.7.10:4954'), { ...policy, networks: [] })).toMatch(/the inventory names no trivy\.plainHttpNetworks/)
    expect(await plainHttpRefusal(new URL('https://192.0.2.10'), policy)).toBeUndefined()
    expect(await plainHttpRefusal(new URL('http://192.0.2.10:4954'), { ...policy, insecure: true })).toBeUndefined()
    expect(await plainHttpRefusal(new URL('http://localhost:4954'), { ...policy, networks: [] })).toBeUndefined()
  })
})
