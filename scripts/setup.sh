#!/usr/bin/env bash
# One-shot setup on Debian/Ubuntu: system packages, Node.js >= 22, npm deps, the real Trivy binary,
# the test fixture tool, and the build. Safe to re-run: every step skips what is already there.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$LABCTL_ROOT"
say() { printf '[setup] %s\n' "$*" >&2; }

# 1. System packages (the sandbox's real parts). One line per package: `want PACKAGE CHECK...`, where a
#    CHECK is a command on PATH or an absolute path; the package is installed when no CHECK is found.
need_pkgs=()
want() {
  local pkg=$1 c; shift
  for c in "$@"; do
    case $c in
      /*) [ -x "$c" ] && return 0 ;;
      *) command -v "$c" >/dev/null && return 0 ;;
    esac
  done
  need_pkgs+=("$pkg")
}
want haproxy          haproxy /usr/sbin/haproxy
want dnsmasq-base     dnsmasq /usr/sbin/dnsmasq
want docker-registry  docker-registry /usr/bin/docker-registry
want skopeo           skopeo
want openssh-server   /usr/sbin/sshd
want openssh-client   ssh
want dnsutils         dig
want openssl          openssl
want sudo             sudo
want curl             curl
want prometheus       promtool   # promtool (alert rule tests) and the lab's Prometheus
want nftables         nft /usr/sbin/nft
want golang-go        go /usr/local/go/bin/go
# The sandbox VM (`labctl sandbox vm up`): its image, QEMU, its disk overlay and its NoCloud seed.
want debootstrap      debootstrap /usr/sbin/debootstrap
want qemu-system-x86  qemu-system-x86_64
want qemu-utils       qemu-img
want genisoimage      genisoimage
want e2fsprogs        mkfs.ext4 /usr/sbin/mkfs.ext4
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing Debian packages: ${need_pkgs[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  # No package may start a daemon of its own (Debian's prometheus would listen on 0.0.0.0:9090 under
  # systemd): the lab starts what it needs itself, on its own addresses.
  policy=/usr/sbin/policy-rc.d; own_policy=
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null; $SUDO chmod 0755 "$policy"; own_policy=1; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null || { [ -n "$own_policy" ] && $SUDO rm -f "$policy"; exit 1; }
  [ -n "$own_policy" ] && $SUDO rm -f "$policy"
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

# 3. npm dependencies (exactly the lock, npm's own `npm ci`) when node_modules is missing or older than
#    package-lock.json, then the build (TypeScript + esbuild bundle + oclif manifest + JSON Schema).
#    A node_modules that is a symlink (a worktree sharing another checkout's) is left alone: `npm ci`
#    would empty the shared directory under whoever else uses it.
if [ -L node_modules ]; then
  if [ package-lock.json -nt node_modules/.package-lock.json ]; then
    say "node_modules is a symlink to $(readlink node_modules): not reinstalling it although package-lock.json is newer (run npm ci there)"
  fi
elif [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "npm ci (from package-lock.json)"
  npm ci --no-audit --no-fund >/dev/null
fi
say "build"
npm run -s build >/dev/null

# 4. Test tooling built with Go: the real Trivy server and the fixture DB/image maker.
"$LABCTL_ROOT/scripts/build-tools.sh"
