#!/usr/bin/env bash
# Headless Chromium for the report and web UI tests, from Debian's packages. Playwright
# (the test extra) drives it through executable_path; its own browser download is not used.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is missing; install Debian's 'chromium' package (needs root), or the browser tests will skip outside CI" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version
