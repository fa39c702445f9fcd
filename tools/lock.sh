#!/usr/bin/env bash
# Write requirements.lock: pyproject.toml's ranges (with the test and ray extras) resolved
# for Python 3.11, keeping every version the current lock names unless the ranges exclude
# it (`UPGRADE=1 tools/lock.sh` takes the newest allowed instead; test before committing).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
source tools/uv_env.sh
"${uv_cmd[@]}" pip compile pyproject.toml --extra test --extra ray -p "$PYTHON" "${uv_index[@]}" \
  ${UPGRADE:+--upgrade} --no-annotate --custom-compile-command "make lock" -o requirements.lock
