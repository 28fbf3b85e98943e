#!/usr/bin/env bash
# Install the pinned third-party Node clients (package-lock.json) into tests/interop/node_modules
# (gitignored): the MCP Inspector CLI and mcp-remote. A no-op when the lock has not changed since
# the last successful install, so the test command can call it every run.
#
# Pinned on purpose: on Node 20 a bare `npm install @modelcontextprotocol/inspector` resolves to
# 0.15.0 (newer releases declare node >=22), which speaks only the handshake era. 2.12.0 installs
# with EBADENGINE warnings and its CLI works on Node 20.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE"

command -v node >/dev/null || { echo "node not found: install Node.js >= 20" >&2; exit 2; }
command -v npm >/dev/null || { echo "npm not found: install npm" >&2; exit 2; }

STAMP="node_modules/.mcp-image-server-lock.sha256"
WANT="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x node_modules/.bin/mcp-inspector ] \
   && [ -x node_modules/.bin/mcp-remote ]; then
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "$WANT" > "$STAMP"
echo "installed @modelcontextprotocol/inspector and mcp-remote in $HERE/node_modules"
