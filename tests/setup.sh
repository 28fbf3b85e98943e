#!/bin/sh
# What the suite uses beyond Python packages, from pinned locks: the Node clients of the interop
# and tasks suites (MCP Inspector CLI, mcp-remote, the TypeScript SDK). Quick when already there.
# Without node/npm/chromium/redis-server those suites skip and say why, unless MCP_TEST_REQUIRE_ALL=1 (CI),
# which turns anything missing into an error instead of a silent skip.
set -u
HERE=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
STRICT=${MCP_TEST_REQUIRE_ALL:-0}

missing() {
    if [ "$STRICT" = 1 ]; then
        echo "tests/setup.sh: $1 (required: MCP_TEST_REQUIRE_ALL=1)" >&2
        exit 1
    fi
    echo "tests/setup.sh: $1; the tests that need it will be skipped" >&2
}

if [ "$STRICT" = 1 ] && ! command -v chromium >/dev/null 2>&1; then
    missing "chromium not found (Debian: apt-get install chromium)"
fi
if [ "$STRICT" = 1 ] && ! command -v redis-server >/dev/null 2>&1; then
    missing "redis-server not found (Debian: apt-get install redis-server)"
fi
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 && command -v bash >/dev/null 2>&1; then
    for script in "$HERE/interop/install_clients.sh" "$HERE/tasks/install.sh" \
        "$HERE/oauth/install.sh"; do
        bash "$script" >&2 || missing "$script failed"
    done
else
    missing "node/npm not found (Node.js >= 20)"
fi
exit 0
