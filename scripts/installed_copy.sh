# Sourced by scripts/lint_imports.sh and scripts/typecheck.sh: the installed layout of the package for tools that
# read modules where they lie on disk. This repository keeps refine/ selection/ models/ rho1/ trainer/ tasks/ at the
# top and maps them into tokensift.* (pyproject.toml package-dir), so such a tool runs on a copy of the package
# installed into a temporary directory (pip builds it in an isolated environment with the setuptools
# pyproject.toml asks for). Run the tool from there, so that the checkout's tokensift/ folder is not imported.
#
# After `installed_copy`: $root is the checkout, $py its Python ($PYTHON or .venv/bin/python), $tmp a temporary
# directory removed on exit, and $tmp/site holds the package (tokensift/ with refine/, selection/, ... inside).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=${PYTHON:-$root/.venv/bin/python}

installed_copy() {  # $1: the calling script's name, for the error message
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"; rm -rf "$root/build"' EXIT
  (cd "$root" && "$py" -m pip install -q --no-deps --target "$tmp/site" . >/dev/null 2>&1) \
    || { echo "$1: building the package failed (pip install --target)"; exit 1; }
}
