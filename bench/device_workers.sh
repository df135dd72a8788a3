#!/bin/bash
# bench/compare_diod.py on a fresh many-core x86-64 box without diod installed:
# our server with --workers 1 and --workers auto against Debian's diod, in the same
# interleaved runs; the table goes to $OUT/workers.txt and the figures to
# $OUT/workers.json. About 5 minutes on 16 cores (2 runs, 4 s per diodload).
#
# What it carries, in the repository root (ignored through .git/info/exclude):
#   .devcarry/bin  diod, diodload, diodcat (copied from /usr/sbin of a Debian box)
#   .devcarry/lib  their shared libraries that a base image lacks (ldd lists them;
#                  glibc's own are left to the box)
#   .whl/          wheels of our runtime dependencies for CPython 3.12 (cryptography,
#                  cffi, pycparser, tqdm, uvloop)
# Our package runs from the checkout through PYTHONPATH; nothing is installed.
#
# Environment: PYTHON (default python3), OUT (default /tmp/ninep-bench-out),
# BENCH_ARGS (replaces the default compare_diod.py arguments below),
# SKIP_WHEELS=1 (use the interpreter's own packages).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
OUT=${OUT:-/tmp/ninep-bench-out}
mkdir -p "$OUT"

if [ "${SKIP_WHEELS:-0}" != 1 ]; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/ninep-site "$ROOT"/.whl/*.whl
    export PYTHONPATH=/tmp/ninep-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export DIOD_BIN_DIR=$ROOT/.devcarry/bin
export LD_LIBRARY_PATH=$ROOT/.devcarry/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PYTHONUNBUFFERED=1

{
    echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs ($(nproc --all) online)"
    "$PYTHON" --version
    "$PYTHON" -c 'import ninep, uvloop, cryptography; print("ninep", ninep.__version__, "uvloop", uvloop.__version__)'
    "$DIOD_BIN_DIR/diod" -h 2>&1 | head -1 || true
} 2>&1 | tee "$OUT/workers.txt"

# shellcheck disable=SC2086  # BENCH_ARGS is a list of words
set -o pipefail
"$PYTHON" bench/compare_diod.py --python "$PYTHON" \
    ${BENCH_ARGS:---workers 1,auto --runs 2 --runtime 4 --file-mib 256} \
    --json "$OUT/workers.json" 2> >(tee "$OUT/workers.log" >&2) | tee -a "$OUT/workers.txt"
