#!/usr/bin/env bash
# Test the lower ends of pyproject.toml's ranges: a venv with the oldest allowed version of
# every direct dependency (uv --resolution lowest-direct), torch and torchvision as in
# requirements.lock (the wheels on disk), then the fast test suite in it.
#   VENV=/tmp/venv-oldest tools/test_oldest.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-oldest}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
source tools/uv_env.sh
need_uv
[ -x "$VENV/bin/python" ] || "${uv_cmd[@]}" venv -q -p "$PYTHON" "$VENV"
grep -E '^(torch|torchvision)==' requirements.lock > "$VENV/torch.txt"
"${uv_cmd[@]}" pip install -q -p "$VENV/bin/python" --resolution lowest-direct ${uv_index[@]+"${uv_index[@]}"} \
  -c "$VENV/torch.txt" -e '.[test,ray]'
"$VENV/bin/python" -c 'from sagekit.report import ensure_kernel; ensure_kernel()'
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" -m pytest -q -p no:cacheprovider "$@"
