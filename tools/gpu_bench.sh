#!/usr/bin/env bash
# The GPU figures of the README in one run: each `sagekit bench` measurement as one JSON file
# in $OUT (default bench-out/), their logs in $OUT/bench.log. Random-weight pipelines of the
# real architectures are built once into $SAGEKIT_BENCH_DIR (default: a temporary folder).
#   DEVICE=cuda SD=sd15 XL=sdxl tools/gpu_bench.sh      (CPU dry run: DEVICE=cpu SD=tiny-sdxl XL=tiny-sdxl)
set -u
OUT=${OUT:-bench-out}
DEVICE=${DEVICE:-cuda}
SD=${SD:-sd15}
XL=${XL:-sdxl}
STEPS=${STEPS:-}  # empty: each architecture's default (50)
ONLY=${ONLY:-}    # empty: every measurement; else the names to run, e.g. ONLY="sweep-fp16 search-sd"
mkdir -p "$OUT"
export SAGEKIT_BENCH_DIR=${SAGEKIT_BENCH_DIR:-$(mktemp -d)}
PY=${PYTHON:-python3}

bench() {  # name, then the arguments of `sagekit bench`
    local name=$1 start=$SECONDS
    shift
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then return; fi
    echo "== $name: sagekit bench $* --device $DEVICE ${STEPS:+--steps $STEPS}" | tee -a "$OUT/bench.log"
    if $PY -m sagekit bench "$@" --device "$DEVICE" ${STEPS:+--steps $STEPS} --json >"$OUT/$name.json" 2>>"$OUT/bench.log"; then
        tail -n 1 "$OUT/$name.json"
    else
        echo "$name failed (see bench.log)"
    fi
    echo "$name: $((SECONDS - start)) s" | tee -a "$OUT/bench.log"
}

bench sweep-fp16 sweep --arch "$SD" --dtype float16
bench sweep-bf16-compile sweep --arch "$SD" --dtype bfloat16 --compile
bench search-sd search --arch "$SD" --iterations 2
bench search-xl search --arch "$XL" --iterations 2
STEPS=5 bench sweep-auto-batch sweep --arch "$SD" --batch-size 0
