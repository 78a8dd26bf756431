#!/usr/bin/env bash
# Regenerates the per-family parity fixtures (see make_fixtures.py): needs the oracle
# environment (bench/setup-oracle.sh) plus `pip install sentencepiece protobuf` (the
# SentencePiece fixtures), and llama.cpp's converter, which the llama-cpp-python
# 0.3.36 source package vendors:
#   pip download llama-cpp-python==0.3.36 --no-deps --no-binary :all:   (then untar)
#   LLAMA_CPP_DIR=.../llama_cpp_python-0.3.36/vendor/llama.cpp testdata/families/make_fixtures.sh [family...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py=${ORACLE_PY:-$HOME/.cache/hd-oracle/bin/python}
: "${LLAMA_CPP_DIR:?set LLAMA_CPP_DIR to llama.cpp (vendor/llama.cpp of the llama-cpp-python sdist)}"
"$py" "$here/make_fixtures.py" "$here" "$LLAMA_CPP_DIR" "$@"
