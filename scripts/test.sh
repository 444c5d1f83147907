#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need, builds, then runs every tier — unit (no
# sandbox) first, then sandbox (against a real sandbox lab started by the tests themselves); none is
# skipped. Extra arguments go to vitest (e.g. `--project unit`, or a test file).
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
"$here/setup.sh"
. "$here/env.sh"
cd "$LABCTL_ROOT"
npm run -s typecheck
report=$(mktemp)
set +e
vitest run --reporter=default --reporter=json --outputFile="$report" "$@"
rc=$?
set -e
# One line per tier, then a plain closing line any CI reads: "tests: N passed, N failed".
node "$here/test-summary.mjs" "$report" || true
rm -f "$report"
exit $rc
