#!/usr/bin/env bash
# Chromaprint for audio fingerprints (ledger/fingerprint/_chromaprint.py loads
# libchromaprint1; bench/bench_media.py times fpcalc), from Debian's packages. Video
# and 3D need nothing outside pip (PyAV wheels carry FFmpeg; trimesh is pure Python).
set -euo pipefail
if command -v fpcalc >/dev/null 2>&1 && ldconfig -p 2>/dev/null | grep -q libchromaprint; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "Chromaprint is missing; install libchromaprint-tools (fpcalc and libchromaprint1) for audio fingerprints" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends libchromaprint-tools >/dev/null
