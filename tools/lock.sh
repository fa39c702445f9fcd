#!/usr/bin/env bash
# Write requirements.lock: pyproject.toml's ranges (with the test and ray extras) resolved
# once for every platform and Python sagekit supports (uv's universal resolution: Linux
# x86_64 and aarch64, macOS arm64, Python 3.10-3.13; each line carries the markers of
# where it applies, so CUDA wheels go only where the platform has them). Versions the
# current lock names are kept unless the ranges exclude them (`UPGRADE=1 tools/lock.sh`
# takes the newest allowed instead; test before committing). Resolved against PyPI alone:
# a local wheel folder holds one platform's files, which would hide the others'.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
source tools/uv_env.sh
need_uv
"${uv_cmd[@]}" pip compile pyproject.toml --extra test --extra ray --universal --python-version 3.10 \
  ${UPGRADE:+--upgrade} --no-annotate --custom-compile-command "make lock" -o requirements.lock
tools/check_lock.sh
