#!/usr/bin/env bash
# A second build of the native leaf walker (ledger/integrity/_leafwalk_src/) with
# AddressSanitizer and UndefinedBehaviorSanitizer, and tests/test_native_walk.py run
# against it. The build goes to a temporary copy of the package, so the normal .so in
# ledger/integrity is never replaced. Fails when the build fails or a sanitizer reports.
#
#   bash scripts/sanitize-native.sh [PYTHON] [pytest args...]
#
# Python itself is not instrumented, so libasan is preloaded; CPython keeps objects
# alive until exit, which makes LeakSanitizer's report noise (detect_leaks=0).
# test_renderings_ignore_a_comma_decimal_locale is left out: it starts Python with a
# bare environment (no LD_PRELOAD), so the sanitized walker cannot load there.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-.venv/bin/python}
shift || true
# The tests run from a temporary copy of the tree: a relative interpreter path (the
# Makefile passes .venv/bin/python) must be made absolute first.
if [[ "$PY" == */* ]]; then
  PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
fi
CC=${CC:-gcc}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/seedledger-sanitize.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

include=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
suffix=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')

# The tree the tests import: this checkout's package and tests, with the sanitized walker.
mkdir -p "$tmp/tree"
cp -r ledger tests pyproject.toml "$tmp/tree/"
[ -f README.md ] && cp README.md "$tmp/tree/"
rm -f "$tmp/tree"/ledger/integrity/_leafwalk*.so
sanitize=(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
"$CC" -shared -fPIC -g -O1 -std=c11 -Wall -Wextra -Wno-missing-field-initializers -fvisibility=hidden \
  "${sanitize[@]}" -I"$include" ledger/integrity/_leafwalk_src/*.c -lsqlite3 -lcrypto \
  -o "$tmp/tree/ledger/integrity/_leafwalk$suffix"

libasan=$("$CC" -print-file-name=libasan.so)
if [ ! -e "$libasan" ]; then
  echo "sanitize-native: $CC has no libasan ($libasan)" >&2
  exit 1
fi
log="$tmp/sanitizer"
export LD_PRELOAD="$libasan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:exitcode=99:log_path=$log"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=99"
export PYTHONPATH="$tmp/tree"
status=0
(cd "$tmp/tree" && "$PY" -m pytest -q -x -p no:cacheprovider --capture=sys tests/test_native_walk.py \
  -k "not comma_decimal_locale" "$@") || status=$?
# --capture=sys leaves fd 2 alone, so a report that kills pytest is still printed; one in a
# CLI subprocess may surface only as that subprocess's exit code: ASan's logs are read too
if compgen -G "$log.*" >/dev/null; then
  cat "$log".* >&2
  echo "sanitize-native: the sanitizers reported (above)" >&2
  exit 1
fi
if [ "$status" -ne 0 ]; then
  echo "sanitize-native: tests/test_native_walk.py failed against the sanitized build (exit $status)" >&2
fi
exit "$status"
