import { XMLBuilder } from 'fast-xml-parser'
import type { CheckResult } from '../checks/types.js'

/** JUnit XML for Jenkins' junit step: one testcase per check; warn passes with system-out, skip is skipped. */
export function toJUnit(suite: string, checks: CheckResult[], timestamp = new Date()): string {
  const builder = new XMLBuilder({ ignoreAttributes: false, attributeNamePrefix: '@_', format: true, suppressEmptyNode: true })
  const failures = checks.filter((c) => c.status === 'fail').length
  const skipped = checks.filter((c) => c.status === 'skip').length
  const time = (ms: number) => (ms / 1000).toFixed(3)
  const doc = {
    '?xml': { '@_version': '1.0', '@_encoding': 'UTF-8' },
    testsuites: {
      '@_name': suite,
      '@_tests': checks.length,
      '@_failures': failures,
      testsuite: {
        '@_name': suite,
        '@_tests': checks.length,
        '@_failures': failures,
        '@_errors': 0,
        '@_skipped': skipped,
        '@_timestamp': timestamp.toISOString(),
        '@_time': time(checks.reduce((a, c) => Math.max(a, c.durationMs), 0)),
        testcase: checks.map((c) => ({
          '@_classname': `${suite}.${c.check}.${c.host}`,
          '@_name': c.name,
          '@_time': time(c.durationMs),
          ...(c.status === 'fail' ? { failure: { '@_message': c.detail, '@_type': c.check, '#text': `${c.detail}${c.fix ? `\nnext: ${c.fix}` : ''}` } } : {}),
          ...(c.status === 'skip' ? { skipped: { '@_message': c.detail } } : {}),
          ...(c.status === 'warn' || c.status === 'pass' ? { 'system-out': `${c.status}: ${c.detail}${c.fix ? `\nnext: ${c.fix}` : ''}` } : {}),
        })),
      },
    },
  }
  return builder.build(doc) as string
}
