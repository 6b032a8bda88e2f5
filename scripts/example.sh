#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run thead's main job on the shipped example, writing to out/example/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python examples/make_example.py examples/data
.venv/bin/thead preprocess examples/data -o out/example/work
echo "results in out/example/"
