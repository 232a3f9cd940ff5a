#!/usr/bin/env bash
# Type check of the package with pyright in basic mode ([tool.pyright] in pyproject.toml), on an installed copy
# of the package (scripts/installed_copy.sh says why) with the venv's packages for the third-party imports.
#   bash scripts/typecheck.sh [pyright options]    the package, against .venv (Python 3.11; $PYTHON picks another)
#   bash scripts/typecheck.sh --t5x PYTHON312      rho1/t5x_models.py only (excluded above: it needs t5x), against
#                                                  the environment with real t5x, e.g. .t5x-venv/bin/python
source "$(dirname "$0")/installed_copy.sh"
installed_copy typecheck
cp "$root/pyproject.toml" "$tmp/site/"  # [tool.pyright]: its paths are relative to the installed copy
cd "$tmp/site"
if [ "${1:-}" = "--t5x" ]; then
  env_py=${2:?--t5x needs the interpreter of the t5x environment}
  env_py=$(cd "$root" && cd "$(dirname "$env_py")" && pwd)/$(basename "$env_py")  # absolute, not resolved: a venv
  # a pyrightconfig.json takes precedence over pyproject.toml
  printf '{"include": ["tokensift/rho1/t5x_models.py"], "typeCheckingMode": "basic", "pythonVersion": "3.12"}\n' \
    > pyrightconfig.json
  "$py" -m pyright --pythonpath "$env_py" "${@:3}"
  exit
fi
"$py" -m pyright --pythonpath "$py" "$@"
