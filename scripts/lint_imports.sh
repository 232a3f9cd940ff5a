#!/usr/bin/env bash
# Layer contracts (.importlinter) with import-linter. import-linter finds a package's modules where they lie on
# disk, so the check runs on an installed copy of the package (scripts/installed_copy.sh says why).
source "$(dirname "$0")/installed_copy.sh"
installed_copy lint_imports
cd "$tmp"
PYTHONPATH="$tmp/site" "$py" -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())" \
  "$root/.importlinter" "$@"
