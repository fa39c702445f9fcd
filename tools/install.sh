#!/usr/bin/env bash
# Create .venv (if missing) and install the tested environment into it: every package at
# the version requirements.lock names for this platform and Python (the demo stays
# reproducible), then sagekit itself. The interpreter: PYTHON if set, else the newest
# supported one found (3.13, 3.12, 3.11, 3.10). Uses uv when it can be had (about 20x
# faster than pip), else pip.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
SUPPORTED="3.13 3.12 3.11 3.10"

version_of() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null; }
supported() { case " $SUPPORTED " in *" $1 "*) return 0 ;; esac; return 1; }

# an existing environment keeps its Python unless PYTHON names another
if [ -z "${PYTHON:-}" ] && [ -x "$VENV/bin/python" ] && supported "$(version_of "$VENV/bin/python")"; then
  # the interpreter the venv was made from (on 3.10, sys._base_executable names the venv's own)
  PYTHON=$("$VENV/bin/python" -c 'import os, sys
base = os.path.join(sys.base_prefix, "bin", "python%d.%d" % sys.version_info[:2])
print(base if os.path.exists(base) else os.path.realpath(sys.executable))')
fi
if [ -z "${PYTHON:-}" ]; then
  for v in $SUPPORTED; do
    # a pyenv shim exists for every installed version but runs only the selected ones
    if command -v "python$v" >/dev/null 2>&1 && [ "$(version_of "python$v")" = "$v" ]; then PYTHON=python$v; break; fi
  done
  if [ -z "${PYTHON:-}" ] && command -v python3 >/dev/null 2>&1; then PYTHON=python3; fi
fi
found=$( [ -n "${PYTHON:-}" ] && version_of "$PYTHON" || true)
if ! supported "$found"; then
  echo "sagekit needs Python 3.10-3.13; ${PYTHON:-no python3} is ${found:-not a Python that runs}" \
    "(set PYTHON=/path/to/python3.x)" >&2
  exit 2
fi
PYTHON=$(command -v "$PYTHON")
if [ -x "$VENV/bin/python" ] && [ "$(version_of "$VENV/bin/python")" != "$found" ]; then
  echo "$VENV holds Python $(version_of "$VENV/bin/python"), not $found: remove it (rm -rf $VENV) or set VENV=" >&2
  exit 2
fi
echo "building $VENV with Python $found ($PYTHON)"

source tools/uv_env.sh
if [ ${#uv_cmd[@]} -gt 0 ]; then
  [ -x "$VENV/bin/python" ] || "${uv_cmd[@]}" venv -q -p "$PYTHON" "$VENV"
  # ${a[@]+"${a[@]}"}: an empty array under set -u in macOS's bash 3.2
  "${uv_cmd[@]}" pip install -q -p "$VENV/bin/python" --compile-bytecode ${uv_index[@]+"${uv_index[@]}"} \
    -r requirements.lock
  "${uv_cmd[@]}" pip install -q -p "$VENV/bin/python" --no-deps -e .
else
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q -r requirements.lock
  "$VENV/bin/python" -m pip install -q --no-deps -e .
fi
# A Jupyter kernel for this interpreter, so papermill never runs another Python.
"$VENV/bin/python" -c 'from sagekit.report import ensure_kernel; ensure_kernel()'
