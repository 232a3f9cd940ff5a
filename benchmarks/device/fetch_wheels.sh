#!/usr/bin/env bash
# Runs here (with PyPI), before a GPU run: what benchmarks/device/run.sh needs on a machine that reaches no
# network, in two git-ignored folders that the device call carries (README.md beside this file).
#
#   benchmarks/device/wheels/  the packages the GPU image lacks, pinned (pip download --no-deps):
#                              gin-config (bench.py reads the models' gin files), gguf (tokensift's GGUF loader;
#                              the score job's default model), setuptools >= 77 (builds the project offline:
#                              pyproject.toml's PEP 639 license field)
#   benchmarks/device/data/    the sample data the benchmark reads, in the layout of ../shared/data: the C4
#                              validation sample, the C4 SentencePiece model, all-MiniLM-L6-v2's tokenizer and
#                              config (no weights: the benchmark writes random ones)
#
# All three wheels are pure Python (py3-none-any), so the GPU image's Python version does not matter.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/benchmarks/device"
py=${PYTHON:-$root/.venv/bin/python}
[ -x "$py" ] || py=python3

WHEELS=(gin-config==0.5.0 gguf==0.19.0 setuptools==80.9.0)

rm -rf "$here/wheels"
mkdir -p "$here/wheels"
"$py" -m pip download -q --no-deps --only-binary=:all: --dest "$here/wheels" "${WHEELS[@]}"

data=$("$py" -c "from tokensift.core import paths; print(paths.data_dir())")
minilm=$("$py" -c "from tokensift.core import paths; print(paths.minilm_dir())")
rm -rf "$here/data"
mkdir -p "$here/data/c4/jsonl" "$here/data/tokenizers" "$here/data/minilm"
cp "$data/c4/jsonl/c4-validation-sample-1000.json.gz" "$here/data/c4/jsonl/"
cp "$data/tokenizers/c4-32768.model" "$here/data/tokenizers/"
cp "$minilm/tokenizer.json" "$minilm/config.json" "$here/data/minilm/"

ls -l "$here/wheels"
du -sh "$here/wheels" "$here/data"
