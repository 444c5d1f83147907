#!/usr/bin/env bash
# One-shot setup on Debian/Ubuntu: system packages, Node.js >= 22, npm deps, the real Trivy binary,
# the test fixture tool, and the build. Safe to re-run: every step skips what is already there.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$LABCTL_ROOT"
say() { printf '[setup] %s\n' "$*" >&2; }

# 1. System packages (the sandbox's real parts).
need_pkgs=()
command -v haproxy  >/dev/null || [ -x /usr/sbin/haproxy ] || need_pkgs+=(haproxy)
command -v dnsmasq  >/dev/null || [ -x /usr/sbin/dnsmasq ] || need_pkgs+=(dnsmasq-base)
command -v docker-registry >/dev/null || [ -x /usr/bin/docker-registry ] || need_pkgs+=(docker-registry)
command -v skopeo   >/dev/null || need_pkgs+=(skopeo)
[ -x /usr/sbin/sshd ] || need_pkgs+=(openssh-server)
command -v ssh      >/dev/null || need_pkgs+=(openssh-client)
command -v dig      >/dev/null || need_pkgs+=(dnsutils)
command -v openssl  >/dev/null || need_pkgs+=(openssl)
command -v sudo     >/dev/null || need_pkgs+=(sudo)
command -v curl     >/dev/null || need_pkgs+=(curl)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || need_pkgs+=(nftables)
command -v go       >/dev/null || [ -x /usr/local/go/bin/go ] || need_pkgs+=(golang-go)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_pkgs[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
fi
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"

# 2. Node.js >= 22 (installs node@24 from the npm registry into .tools/ when the machine's is older).
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 22 ]; then
  say "node $(node --version 2>/dev/null || echo none) is older than 22: installing node@24 into .tools/node"
  rm -rf .tools/node-install && mkdir -p .tools/node-install .tools/node/bin
  npm install --prefix .tools/node-install --no-save node@24 >/dev/null
  ln -sf "$LABCTL_ROOT/.tools/node-install/node_modules/node/bin/node" .tools/node/bin/node
  ln -sf "$(command -v npm)" .tools/node/bin/npm
  . "$(dirname "${BASH_SOURCE[0]}")/env.sh"
fi
say "node $(node --version)"

# 3. npm dependencies and the build (TypeScript + oclif manifest + JSON Schema).
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm install (from package-lock.json)"
  # Not `npm ci`: npm 11 rejects this lock for listing only this platform's optional packages.
  npm install --no-save --no-audit --no-fund >/dev/null
fi
say "build"
npm run -s build >/dev/null

# 4. Test tooling built with Go: the real Trivy server and the fixture DB/image maker.
"$LABCTL_ROOT/scripts/build-tools.sh"
