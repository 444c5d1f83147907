// The runtime API's text, parsed: answers captured from a real HAProxy 2.6 (test/fleet/fixtures.ts).
import { describe, expect, it } from 'vitest'
import { commands, edgeServers, parseServersState, parseStat, runtimeError } from '../../src/edge/runtime.js'
import { STAT_TWO, STATE_TWO } from './fixtures.js'

describe('edge runtime API parser', () => {
  it('joins show servers state and show stat into one record per server', () => {
    const s = edgeServers('trivy-vm-be', STATE_TWO, STAT_TWO)
    expect(s.map((x) => [x.name, x.address, x.port, x.status, x.up, x.admin, x.operational, x.inFlight, x.check])).toEqual([
      ['trivy-0', '198.18.7.10', 4954, 'UP', true, 'ready', 'running', 4, 'L7OK'],
      ['trivy-1', '198.18.7.11', 4954, 'DRAIN', false, 'drain', 'running', 0, 'L7OK'],
      ['trivy-2', '198.18.7.12', 4954, 'MAINT', false, 'maint', 'stopped', 0, 'L4CON'],
    ])
  })

  it('keeps only the asked backend', () => {
    const other = STATE_TWO.replace('3 trivy-vm-be 3 trivy-2', '4 other-be 1 trivy-2')
    expect(edgeServers('trivy-vm-be', other, STAT_TWO).map((x) => x.name)).toEqual(['trivy-0', 'trivy-1'])
    expect(edgeServers('other-be', other, STAT_TWO).map((x) => [x.name, x.status])).toEqual([['trivy-2', 'unknown']])
  })

  it('a server UP by its checks but stopped by its op state is not up', () => {
    const stopped = STATE_TWO.replace('trivy-0 198.18.7.10 2 0', 'trivy-0 198.18.7.10 3 0')
    expect(edgeServers('trivy-vm-be', stopped, STAT_TWO)[0]).toMatchObject({ operational: 'stopping', up: false })
  })

  it('refusals become one-line errors, not empty lists', () => {
    expect(() => parseServersState("Can't find backend.\n\n")).toThrow(/refused `show servers state`: Can't find backend/)
    expect(() => parseStat('No such proxy.\n\n')).toThrow(/refused `show stat`: No such proxy/)
    expect(runtimeError('No such server.\n')).toBe('No such server.')
    expect(runtimeError('\n')).toBeUndefined()
    expect(() => parseServersState('2\n# be_id\n')).toThrow(/format version "2"/)
    expect(() => parseStat('hello\n')).toThrow(/unexpected `show stat` answer/)
    expect(parseServersState('')).toEqual([])
  })

  it('names that could smuggle a second command are refused before anything is sent', () => {
    expect(commands.setState('trivy-vm-be', 'trivy-0', 'drain')).toBe('set server trivy-vm-be/trivy-0 state drain')
    expect(() => commands.setState('trivy-vm-be', 'trivy-0; shutdown frontend fe', 'drain')).toThrow(/not a valid HAProxy server name/)
    expect(() => commands.serversState('be x')).toThrow(/not a valid HAProxy backend name/)
    expect(() => commands.setState('trivy-vm-be', 'trivy-0', 'stopped' as 'drain')).toThrow(/not a server state/)
  })
})
