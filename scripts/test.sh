#!/usr/bin/env bash
# Set up .venv with the test and bench extras (and the side environments some tests need),
# lint, then run the whole test suite, slow and reliability tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,bench,postgres  # bench: matplotlib for `tracemux bench --quick`
# the viewer's browser tests drive Debian's Chromium (Playwright never downloads a browser)
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
# the PostgreSQL store's tests start a throwaway cluster with Debian's server binaries
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
exec .venv/bin/python -m pytest "$@"
