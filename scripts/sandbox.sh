#!/usr/bin/env bash
# Fresh clone to a validated sandbox lab: setup, `labctl sandbox up` (the lab as a network of machines),
# validate it, then the main flow on it: a token rotation across the server, Jenkins and the secrets dir,
# and the build agent's scan with the rotated Jenkins credential. Without root the lab network cannot be
# made: the loopback sandbox (`--loopback`) is started instead, which has no Jenkins and no agent.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
"$here/setup.sh"
. "$here/env.sh"
cd "$LABCTL_ROOT"
step() { printf '\n== %s\n' "$*"; }

mode=()
if [ "$(id -u)" != 0 ]; then
  echo "not root: the lab network needs root (CAP_NET_ADMIN); starting the loopback sandbox (sandbox up --loopback)" >&2
  mode=(--loopback)
fi
step "labctl sandbox up ${mode[*]}"
bin/labctl sandbox up "${mode[@]}"
step 'labctl --lab sandbox trivy validate'
bin/labctl --lab sandbox trivy validate
step 'labctl --lab sandbox trivy rotate-token --yes   (server, Jenkins credential, secrets dir)'
bin/labctl --lab sandbox trivy rotate-token --yes
dir=$(bin/labctl sandbox status --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s).dir))')
if [ -f "$dir/agent-build.json" ]; then
  step "the agent's build: bind the Jenkins credential, scan the test image with the real trivy client"
  bin/labctl sandbox exec agent -- node test/standins/agent-build.mjs "$dir/agent-build.json"
  grep -h ' agent agent bound \| credential system/' "$dir/logs/jenkins.log" | tail -n 3
fi
step 'labctl --lab sandbox trivy validate --only auth,scan   (with the rotated token)'
bin/labctl --lab sandbox trivy validate --only auth,scan
echo
echo "sandbox lab is up: \`bin/labctl sandbox status\`, \`bin/labctl sandbox down\` when done"
