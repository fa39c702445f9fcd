#!/usr/bin/env bash
# The README's two commands on one Python, as a newcomer runs them: a clean clone of HEAD,
# `make install` with PYTHON=, then `make demo` and `make test`, the tests with the network
# cut off (`unshare -n`, as root; loopback stays, for the Jupyter kernels and Ray) when it
# can be. Chromium is installed before the network is cut. Prints each step's minutes and
# a same-run speed reference (`sagekit bench sweep`'s stock-batched images/s). About 1 h on
# 2 cores.
#   tools/prove_python.sh /path/to/python3.x [work folder, default /tmp/sagekit-prove-3.x] [steps, default "demo test"]
set -euo pipefail
usage="usage: tools/prove_python.sh /path/to/python3.x [work folder] [steps: \"demo test\", \"demo\" or \"test\"]"
PYTHON=$(command -v "${1:?$usage}") || { echo "no Python at $1; $usage" >&2; exit 2; }
PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")  # still right after the cd below
version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
work=${2:-/tmp/sagekit-prove-$version}
steps=${3:-demo test}  # make install always runs
repo=$(cd "$(dirname "$0")/.." && pwd)
# the work folder is deleted first: only an earlier proof's folder (or a new one) is taken
if [ -e "$work" ] && [ ! -e "$work/.sagekit-proof" ]; then
  echo "$work exists and is not an earlier proof's folder: name a new one" >&2
  exit 2
fi
rm -rf "$work" && git clone -q "$repo" "$work" && cd "$work" && touch .sagekit-proof
export PYTHON SAGEKIT_REQUIRE_BROWSER=1 HF_HUB_OFFLINE=1
step() {  # step NAME COMMAND...: run it, print its minutes, stop on failure
  local name=$1 start=$SECONDS; shift
  "$@" > "$work/$name.log" 2>&1 || { echo "$name failed (Python $version): $work/$name.log" >&2; exit 1; }
  echo "$name: $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s"
}
bench() {
  local out
  out=$(.venv/bin/sagekit bench sweep --json 2>"$work/bench.log" | tail -1) \
    || { echo "bench failed: $work/bench.log" >&2; exit 1; }
  "$PYTHON" -c 'import json, sys; print("bench: stock-batched %.2f images/s" % json.loads(sys.argv[1])["b_stock_batched"])' "$out"
}
echo "Python $version ($PYTHON), $(git rev-parse --short HEAD), $work"
step install make install
bench
case " $steps " in *" demo "*) step demo make demo ;; esac
case " $steps " in *" test "*) ;; *) bench; exit 0 ;; esac
tools/install_chromium.sh  # needs the network (apt), so before it is cut
if unshare -n true 2>/dev/null; then
  step test unshare -n sh -c 'ip link set lo up && make test'
else
  echo "NOT CUT: unshare -n is not allowed here (it needs root); the tests run with the network" >&2
  step test make test
fi
bench
