#!/usr/bin/env bash
# Install what the VS Code extension's tests need (called by .ci/run before scripts/test):
#   1. the extension's npm dependencies (npm ci): build, lint, unit tests, .vsix;
#   2. for the end-to-end test in a real VS Code: Debian's Chromium (driven by playwright-core),
#      ripgrep and libkrb5-dev (for code-server's install), and code-server from npm into
#      $CODEFILL_CODE_SERVER_DIR (default ~/.cache/codefill/code-server).
# Each step is skipped when its tool is missing (the tests then skip and say what is missing);
# nothing is downloaded from outside the package registries. See docs/editors.md.
set -euo pipefail
cd "$(dirname "$0")/.."
CODE_SERVER_VERSION=4.100.3
dir="${CODEFILL_CODE_SERVER_DIR:-$HOME/.cache/codefill/code-server}"

if ! command -v npm >/dev/null; then
  echo "setup-tests: npm not found; the VS Code extension tests will be skipped" >&2
  exit 0
fi
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ "${CODEFILL_SKIP_VSCODE_E2E:-}" = 1 ]; then
  exit 0
fi
if ! command -v chromium >/dev/null || ! command -v rg >/dev/null \
    || ! dpkg -s libkrb5-dev >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium ripgrep libkrb5-dev >/dev/null
  else
    echo "setup-tests: chromium/ripgrep/libkrb5-dev missing and apt-get unavailable; the VS Code e2e test will be skipped" >&2
    exit 0
  fi
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
