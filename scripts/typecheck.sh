#!/usr/bin/env bash
# Type check of the package with pyright in basic mode ([tool.pyright] in pyproject.toml), on an installed copy
# of the package (scripts/installed_copy.sh says why) with the venv's packages for the third-party imports.
# Usage: bash scripts/typecheck.sh [pyright options]   (PYTHON=... picks the interpreter; default .venv/bin/python)
source "$(dirname "$0")/installed_copy.sh"
installed_copy typecheck
cp "$root/pyproject.toml" "$tmp/site/"  # [tool.pyright]: its paths are relative to the installed copy
cd "$tmp/site"
"$py" -m pyright --pythonpath "$py" "$@"
