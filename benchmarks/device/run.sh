#!/usr/bin/env bash
# One command for a GPU machine (one H100 or H200, no network, an image with jax[cuda], flax, optax, orbax,
# transformers and torch but no TensorFlow or seqio): installs the carried wheels and the project, then prints
# the table of benchmarks/device/bench.py. Run from anywhere; benchmarks/device/README.md says how.
#
#   bash benchmarks/device/run.sh [--json FILE] [bench.py options]   # the GPU run (<= 8 min on one H100)
#   bash benchmarks/device/run.sh --smoke [--json FILE]              # the same code on the CPU, tiny shapes,
#                                                                    # in the current environment (no install)
#
# Environment: PYTHON (default python3), DEVICE_SITE (where the wheels and the project are installed; default a
# fresh temporary folder), TOKENSIFT_DATA_DIR (default benchmarks/device/data when fetch_wheels.sh made it).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/benchmarks/device"
py=${PYTHON:-python3}
smoke=0
for a in "$@"; do [ "$a" = "--smoke" ] && smoke=1; done

if [ -z "${TOKENSIFT_DATA_DIR:-}" ] && [ -d "$here/data" ]; then
  export TOKENSIFT_DATA_DIR="$here/data"  # the sample data that fetch_wheels.sh staged for the trip
fi

if [ "$smoke" = 1 ]; then
  # the CPU, one device, as the GPU run has one: drop the test suite's fake devices, hide any GPU
  export JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES="" XLA_FLAGS=""
else
  shopt -s nullglob
  wheels=("$here"/wheels/*.whl)
  if [ ${#wheels[@]} -eq 0 ]; then
    echo "run.sh: no wheels in $here/wheels: run benchmarks/device/fetch_wheels.sh first and carry that folder" >&2
    exit 2
  fi
  site=${DEVICE_SITE:-$(mktemp -d /tmp/tokensift-device-site.XXXXXX)}
  t0=$(date +%s)
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${wheels[@]}"
  export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
  # the project itself; --no-build-isolation: the build uses the carried setuptools (nothing can be fetched)
  (cd "$root" && "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --upgrade \
      --target "$site" .)
  rm -rf "$root/build"
  echo "run.sh: installed ${#wheels[@]} wheels and tokensift into $site in $(( $(date +%s) - t0 )) s"
fi
cd "$root"
PYTHONUNBUFFERED=1 exec "$py" "$here/bench.py" "$@"
