#!/usr/bin/env bash
# Layer contracts (.importlinter) with import-linter. import-linter finds a package's modules where they lie on
# disk, while this repository keeps refine/ selection/ models/ rho1/ trainer/ tasks/ at the top and maps them
# into tokensift.* (pyproject.toml package-dir): so the check runs on an installed copy of the package, built
# into a temporary directory (pip builds it in an isolated environment with the setuptools pyproject.toml asks
# for; run from there, so that the checkout's tokensift/ folder is not imported).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; rm -rf "$root/build"' EXIT
(cd "$root" && "$py" -m pip install -q --no-deps --target "$tmp/site" . >/dev/null 2>&1) \
  || { echo "lint_imports: building the package failed (pip install --target)"; exit 1; }
cd "$tmp"
PYTHONPATH="$tmp/site" "$py" -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())" \
  "$root/.importlinter" "$@"
