#!/usr/bin/env bash
# Fresh clone to a validated sandbox lab: setup, `labctl sandbox up`, then the main job on it.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
"$here/setup.sh"
. "$here/env.sh"
cd "$LABCTL_ROOT"
bin/labctl sandbox up
if [ -f dist/commands/trivy/validate.js ]; then
  exec bin/labctl --lab sandbox trivy validate
else
  exec bin/labctl sandbox status
fi
