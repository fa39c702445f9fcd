# Sourced by install.sh and lock.sh: finds uv (installing it with pip if need be) as the
# array uv_cmd, and collects pip's local wheel folders and indexes (uv does not read pip's
# config) as the array uv_index, so uv resolves torch from the wheels on disk.
uv_cmd=()
if command -v uv >/dev/null 2>&1; then
  uv_cmd=(uv)
elif "$PYTHON" -m uv --version >/dev/null 2>&1; then
  uv_cmd=("$PYTHON" -m uv)
elif [ -x "${VENV:-.venv}/bin/python" ] && "${VENV:-.venv}/bin/python" -m uv --version >/dev/null 2>&1; then
  # the environment's own uv (the lock's test extra): a system Python may refuse pip installs
  uv_cmd=("${VENV:-.venv}/bin/python" -m uv)
elif "$PYTHON" -m pip install -q uv >/dev/null 2>&1; then
  uv_cmd=("$PYTHON" -m uv)
fi
uv_index=()
while IFS= read -r line; do
  key=${line%%=*}; val=${line#*=}; val=${val//\'/}
  case "$key" in
    *find-links) for v in $val; do uv_index+=(--find-links "$v"); done ;;
    *extra-index-url) for v in $val; do uv_index+=(--extra-index-url "$v"); done ;;
    *constraint) for v in $val; do uv_index+=(--constraint "$v"); done ;;
  esac
done < <("$PYTHON" -m pip config list 2>/dev/null || true)
[ ${#uv_index[@]} -gt 0 ] && uv_index+=(--index-strategy unsafe-best-match)
# for scripts that cannot fall back to pip: stop, saying uv is missing
need_uv() { [ ${#uv_cmd[@]} -gt 0 ] || { echo "$(basename "$0") needs uv (pip install uv)" >&2; exit 1; }; }
true
