#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need, builds, then runs every test —
# unit, in-process, and against a real sandbox lab started by the tests themselves.
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
# A plain closing line any CI reads: "N passed, N failed".
node -e 'const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed` + (r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""))' "$report" || true
rm -f "$report"
exit $rc
