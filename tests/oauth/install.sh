#!/usr/bin/env bash
# Install the OAuth suite's Node dependencies (pinned in package-lock.json: oidc-provider, the OpenID
# provider the tests run on loopback, and the TypeScript SDK OAuth client) into tests/oauth/node_modules
# (gitignored). Idempotent: a no-op when the lock file has not changed since the last successful install.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

command -v node >/dev/null || { echo "node not found: install Node.js >= 20" >&2; exit 2; }
command -v npm >/dev/null || { echo "npm not found: install npm" >&2; exit 2; }

STAMP="node_modules/.mcp-image-server-lock.sha256"
WANT="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f node_modules/oidc-provider/package.json ] \
    && [ -f node_modules/@modelcontextprotocol/sdk/package.json ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$WANT" > "$STAMP"
echo "installed oidc-provider $(node -p "require('./node_modules/oidc-provider/package.json').version")" \
  "and @modelcontextprotocol/sdk $(node -p "require('./node_modules/@modelcontextprotocol/sdk/package.json').version") in $HERE/node_modules"
