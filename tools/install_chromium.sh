#!/usr/bin/env bash
# Headless Chromium for the report browser test (Debian's package). Needs root; without
# it, prints how to install and exits 0 (the browser test then skips, unless
# SAGEKIT_REQUIRE_BROWSER=1, as in CI).
set -u
command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null \
    && exit 0
fi
echo "note: chromium not installed (sudo apt-get install chromium); the browser test will be skipped" >&2
exit 0
