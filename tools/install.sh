#!/usr/bin/env bash
# Create .venv (if missing) and install the tested environment into it: every package at
# the version in requirements.lock (the demo stays reproducible), then sagekit itself.
# Uses uv when it can be had (about 20x faster than pip), else pip.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}

# requirements.lock was resolved for Python 3.11; sagekit itself runs on 3.10-3.13 (pip install .)
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "make builds the tested environment, which needs Python 3.11 (found $("$PYTHON" --version)); on another Python: pip install -e '.[test]'" >&2; exit 1; }

source tools/uv_env.sh
if [ ${#uv_cmd[@]} -gt 0 ]; then
  [ -x "$VENV/bin/python" ] || "${uv_cmd[@]}" venv -q -p "$PYTHON" "$VENV"
  "${uv_cmd[@]}" pip install -q -p "$VENV/bin/python" --compile-bytecode "${uv_index[@]}" -r requirements.lock
  "${uv_cmd[@]}" pip install -q -p "$VENV/bin/python" --no-deps -e .
else
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -r requirements.lock
  "$VENV/bin/python" -m pip install -q --no-deps -e .
fi
# A Jupyter kernel for this interpreter, so papermill never runs another Python.
"$VENV/bin/python" -c 'from sagekit.report import ensure_kernel; ensure_kernel()'
