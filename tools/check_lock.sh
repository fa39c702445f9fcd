#!/usr/bin/env bash
# Resolve-only check of requirements.lock: for each supported platform and Python, every
# line whose markers apply must have a wheel for it (nothing is built or installed; needs
# the package registry, not a GPU). Exits 1 naming the first platform that cannot install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
source tools/uv_env.sh
need_uv
PLATFORMS=${PLATFORMS:-"x86_64-manylinux_2_28 aarch64-manylinux_2_28 aarch64-apple-darwin"}
PYTHONS=${PYTHONS:-"3.10 3.11 3.12 3.13"}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
for platform in $PLATFORMS; do
  for version in $PYTHONS; do
    # macOS 14 is the oldest release torch's arm64 wheels are built for
    if ! MACOSX_DEPLOYMENT_TARGET=14.0 "${uv_cmd[@]}" pip compile requirements.lock --no-deps --only-binary :all: \
        --python-platform "$platform" --python-version "$version" --no-header --no-annotate -q -o "$out"; then
      echo "requirements.lock cannot install on $platform with Python $version" >&2
      exit 1
    fi
    echo "$platform, Python $version: $(grep -c '==' "$out") packages, every one a wheel"
  done
done
