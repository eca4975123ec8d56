#!/usr/bin/env bash
# Headers for the native leaf walker (ledger/integrity/_leafwalk/), from Debian's
# packages. Without them pip builds seedledger without it and `seedledger verify`
# takes its pure-Python path (slower, same results); in CI the suite then fails.
set -euo pipefail
if [ -f /usr/include/sqlite3.h ] && [ -f /usr/include/openssl/evp.h ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "SQLite or OpenSSL headers are missing; install libsqlite3-dev and libssl-dev for the native verify walker" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends gcc libsqlite3-dev libssl-dev >/dev/null
