#!/usr/bin/env bash
# Set up .venv and run the demo into the embedded SQLite store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tracemux demo "$@"
