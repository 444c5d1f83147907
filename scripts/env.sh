# Sourced by the other scripts: puts the project's Node.js (>= 22) first on PATH.
LABCTL_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export LABCTL_ROOT
if [ -x "$LABCTL_ROOT/.tools/node/bin/node" ]; then
  export PATH="$LABCTL_ROOT/.tools/node/bin:$PATH"
fi
export PATH="$LABCTL_ROOT/node_modules/.bin:$PATH"
export npm_config_loglevel=error npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
