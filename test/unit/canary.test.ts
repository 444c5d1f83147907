import { describe, expect, it } from 'vitest'
import { canaryProblem } from '../../src/trivy/api.js'

describe('canaryProblem', () => {
  it('names what keeps a canary outcome from proving the scanner works', () => {
    expect(canaryProblem({ kind: 'ok', vulnerabilities: [{ id: 'CVE-2020-1967', severity: 'HIGH' }] })).toBeUndefined()
    expect(canaryProblem({ kind: 'ok', vulnerabilities: [] })).toMatch(/no vulnerabilities found/)
    expect(canaryProblem({ kind: 'unauthorized' })).toBe('token rejected (401)')
    expect(canaryProblem({ kind: 'error', status: 500, detail: 'HTTP 500: boom' })).toBe('HTTP 500: boom')
  })
})
