#!/usr/bin/env bash
# Install what the VS Code extension's tests need (called by .ci/run before scripts/test):
#   1. the extension's npm dependencies (npm ci): build, lint, unit tests, .vsix;
#   2. for the end-to-end test in a real VS Code: Debian's Chromium (driven by playwright-core),
#      ripgrep and libkrb5-dev (for code-server's install), and code-server from npm into
#      $CODEFILL_CODE_SERVER_DIR (default ~/.cache/codefill/code-server).
# In CI (CI set, as .ci/run does) a missing tool is an error that names it (exit status 1): the
# tests would otherwise skip. Elsewhere the rest is skipped when a tool is missing (exit status 0;
# the tests then skip and say what is missing). Nothing is downloaded from outside the package
# registries. See docs/editors.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CODE_SERVER_VERSION=4.100.3
dir="${CODEFILL_CODE_SERVER_DIR:-$HOME/.cache/codefill/code-server}"
case "$(printf '%s' "${CI:-}" | tr '[:upper:]' '[:lower:]')" in
  ""|0|false|no) ci=0 ;;
  *) ci=1 ;;
esac

# missing WHAT TESTS: WHAT is missing, TESTS cannot run without it. Fatal in CI.
missing() {
  if [ "$ci" = 1 ]; then
    echo "setup-tests: $1 (required in CI for $2)" >&2
    exit 1
  fi
  echo "setup-tests: $1; $2 will be skipped" >&2
  exit 0
}

command -v npm >/dev/null && command -v node >/dev/null \
  || missing "npm/node not found (apt-get install npm)" "the VS Code extension tests"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
[ -x node_modules/.bin/tsc ] && [ -d node_modules/playwright-core ] \
  || missing "npm ci left no node_modules/.bin/tsc or node_modules/playwright-core" \
             "the VS Code extension tests"

if [ "${CODEFILL_SKIP_VSCODE_E2E:-}" = 1 ]; then
  exit 0
fi
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v rg >/dev/null || need+=(ripgrep)
dpkg -s libkrb5-dev >/dev/null 2>&1 || need+=(libkrb5-dev)
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    missing "${need[*]} not installed, and not root to apt-get install them" "the VS Code e2e test"
  elif ! command -v apt-get >/dev/null; then
    missing "${need[*]} not installed, and no apt-get to install them" "the VS Code e2e test"
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  command -v chromium >/dev/null || missing "chromium not found after apt-get install" \
                                            "the VS Code e2e test"
  command -v rg >/dev/null || missing "rg not found after apt-get install ripgrep" \
                                      "the VS Code e2e test"
fi
if [ ! -x "$dir/node_modules/.bin/code-server" ]; then
  mkdir -p "$dir"
  # @vscode/ripgrep's postinstall downloads ripgrep unless this cache holds it: use Debian's.
  tmp="${TMPDIR:-/tmp}"
  cache="$tmp/vscode-ripgrep-cache-1.15.11"
  mkdir -p "$cache" "$tmp/rg-pack"
  cp "$(command -v rg)" "$tmp/rg-pack/rg"
  tar -czf "$cache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz" -C "$tmp/rg-pack" rg
  (cd "$dir" && [ -f package.json ] || echo '{"name":"codefill-code-server","private":true}' > "$dir/package.json")
  (cd "$dir" && npm_config_yes=true npm install --unsafe-perm --no-audit --no-fund --loglevel=error \
    "code-server@$CODE_SERVER_VERSION")
fi
[ -x "$dir/node_modules/.bin/code-server" ] \
  || missing "code-server not installed in $dir (npm install code-server@$CODE_SERVER_VERSION)" \
             "the VS Code e2e test"
