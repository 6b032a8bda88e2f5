#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the test suite. Tests on real media use $THEAD_TEST_DATA
# (default ../shared/data) and skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
