#!/usr/bin/env bash
# Set up .venv with the test and bench extras (and the side environments some tests need),
# lint, then run the whole test suite, slow and reliability tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test,bench  # bench: matplotlib for the `tracemux bench --quick` test
# the viewer's browser tests drive Debian's Chromium (Playwright never downloads a browser)
command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
exec .venv/bin/python -m pytest "$@"
