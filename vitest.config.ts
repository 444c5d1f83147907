import { configDefaults, defineConfig } from 'vitest/config'

// Two tiers, chosen by path (README "Tests"):
//   unit    — no sandbox: in-process tests, stand-ins, and the built binary on files it is given.
//   sandbox — one real sandbox lab started by test/setup/global.ts for the whole run; the files inject
//             faults into it, so they run one at a time.
// `vitest run` (scripts/test.sh, CI) runs both, unit first; `--project unit|sandbox` runs one.
// A file that needs the sandbox for any of its tests belongs to the sandbox tier, and so does every file
// not listed in UNIT (a new folder is never silently left out of the run).
export const UNIT = [
  'test/unit/**/*.test.ts',
  'test/hostile/**/*.test.ts',
  'test/cli/**/*.test.ts',
  'test/jenkins/**/*.test.ts',
  'test/runbook/{engine,parse,pattern,interrupt}.test.ts',
  'test/exporter/{exporter,cli,render,rules}.test.ts',
  'test/db/{mirror,mirror-cli,parse}.test.ts',
]
// Today: test/sandbox/**, test/ssh/** (its own sshd, and the sandbox host), test/runbook/drills.test.ts,
// test/exporter/prometheus.sandbox.test.ts, test/db/{status,load}.test.ts.
export const SANDBOX = ['test/**/*.test.ts']

const common = { testTimeout: 60_000, hookTimeout: 180_000 }

export default defineConfig({
  test: {
    // Builds dist/ when it is missing (tests of the binary run bin/labctl); runs once per run, either tier.
    globalSetup: ['test/setup/built.ts'],
    // One file at a time in both tiers: the sandbox files share one lab, and on this 2-core machine
    // vitest would use a single worker anyway.
    fileParallelism: false,
    reporters: ['default'],
    projects: [
      { test: { ...common, name: 'unit', include: UNIT, sequence: { groupOrder: 0 } } },
      {
        test: {
          ...common,
          name: 'sandbox',
          include: SANDBOX,
          exclude: [...configDefaults.exclude, ...UNIT],
          globalSetup: ['test/setup/global.ts'],
          sequence: { groupOrder: 1 },
          // One retry, in this tier only: real daemons on a loaded 2-core machine have shown rare timing
          // failures (README "Tests": known flakes). A test that fails twice fails the run; every retry
          // is printed by the reporter, so a flake is seen, not hidden.
          retry: 1,
        },
      },
    ],
  },
})
