#!/usr/bin/env bash
# Set up .venv with the test extras (and the side environments some tests need),
# lint, then run the whole test suite, slow and reliability tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/ruff check src tests bench
exec .venv/bin/python -m pytest "$@"
