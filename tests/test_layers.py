"""The layer contracts of ``.importlinter`` (core -> tasks -> models -> rho1 -> trainer -> refine | selection ->
pipeline -> command line; no import cycles) hold, checked by import-linter on an installed copy of the package
(``scripts/lint_imports.sh``, also run by ``.ci/run``); and the checker itself catches a violation."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter")
ROOT = Path(__file__).resolve().parents[1]


def _lint(root: Path) -> subprocess.CompletedProcess:
  env = dict(os.environ, PYTHON=sys.executable)
  return subprocess.run(
    ["bash", str(root / "scripts" / "lint_imports.sh")], env=env, capture_output=True, text=True, timeout=600
  )


def test_layer_contracts_are_kept():
  r = _lint(ROOT)
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
  assert "Contracts: 2 kept, 0 broken." in r.stdout


def test_a_data_layer_reaching_up_into_a_method_package_breaks_the_contract(tmp_path):
  """A copy of the package where the task registry imports refine (as it once did through an importlib
  string, which import-linter cannot see, so here a plain import) fails the check, naming the import."""
  copy = tmp_path / "repo"
  skip = shutil.ignore_patterns(".venv*", ".t5x-venv", ".git", "runs", "*.egg-info", "__pycache__")
  shutil.copytree(ROOT, copy, ignore=skip)
  reg = copy / "tasks" / "registry.py"
  reg.write_text(reg.read_text() + "\n\ndef _families():\n  import tokensift.refine.tasks  # noqa: F401\n")
  r = _lint(copy)
  assert r.returncode != 0
  assert "tokensift.tasks.registry -> tokensift.refine.tasks" in r.stdout
