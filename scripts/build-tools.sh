#!/usr/bin/env bash
# Builds, once per version, the real Trivy binary from its Go module and the project's fixture tool.
# Results are cached under ${XDG_CACHE_HOME:-~/.cache}/labctl/ (the sandbox looks there).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/labctl"
ver="${TRIVY_VERSION:-0.74.0}"
say() { printf '[tools] %s\n' "$*" >&2; }

trivy_bin="$cache/trivy/$ver/trivy"
if [ ! -x "$trivy_bin" ]; then
  say "building trivy v$ver from its Go module (several minutes the first time)"
  # `go install …@vX` asks the proxy for the version list, which is refused here; download the
  # pinned module and build inside it instead (its go.mod has no replace directives).
  tmp=$(mktemp -d)
  dir=$(cd "$tmp" && GOFLAGS=-mod=mod go mod download -json "github.com/aquasecurity/trivy@v$ver" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  rm -rf "$tmp"
  [ -n "$dir" ] || { say "could not download github.com/aquasecurity/trivy@v$ver"; exit 1; }
  mkdir -p "$cache/trivy/$ver"
  (cd "$dir" && GOEXPERIMENT=jsonv2 CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
     -ldflags "-s -w -X github.com/aquasecurity/trivy/pkg/version/app.ver=$ver" \
     -o "$trivy_bin.tmp" ./cmd/trivy)
  mv "$trivy_bin.tmp" "$trivy_bin"
fi
say "trivy $("$trivy_bin" --version 2>/dev/null | head -n1)"

src="$LABCTL_ROOT/test/tools/labfixtures"
if [ -d "$src" ]; then
  sum=$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go | sha256sum | cut -c1-16)
  fx_bin="$cache/labfixtures/$sum/labfixtures"
  if [ ! -x "$fx_bin" ]; then
    say "building labfixtures"
    mkdir -p "$(dirname "$fx_bin")"
    (cd "$src" && GOEXPERIMENT=jsonv2 CGO_ENABLED=0 go build -trimpath -o "$fx_bin.tmp" .)
    mv "$fx_bin.tmp" "$fx_bin"
  fi
  ln -sfn "$fx_bin" "$cache/labfixtures/current"
fi
