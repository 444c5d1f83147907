#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need, builds, then runs every test —
# unit, in-process, and against a real sandbox lab started by the tests themselves.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
"$here/setup.sh"
. "$here/env.sh"
cd "$LABCTL_ROOT"
npm run -s typecheck
exec vitest run "$@"
