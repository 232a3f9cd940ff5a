"""The gin files ship with the package: a non-editable install holds every ``gin_configs/**/*.gin`` and
``tokensift.gin_dir()`` (the t5x ``--gin_search_paths``) points at them, includes included."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import tokensift

ROOT = Path(__file__).resolve().parents[1]
GIN = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "gin_configs").rglob("*.gin"))


def _includes(text: str) -> list[str]:
  return re.findall(r"^include\s+'(gin_configs/[^']+)'", text, flags=re.M)


def test_editable_checkout_gin_dir_is_the_checkout():
  assert Path(tokensift.gin_dir()) == ROOT
  assert len(GIN) > 20


def test_installed_package_holds_the_gin_files_and_gin_dir_finds_them(tmp_path):
  shutil.rmtree(ROOT / "build", ignore_errors=True)  # a stale in-tree build would ship deleted files
  r = subprocess.run(
    [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp_path / "site"), "."],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )
  shutil.rmtree(ROOT / "build", ignore_errors=True)
  assert r.returncode == 0, r.stderr[-2000:]
  env = dict(os.environ, PYTHONPATH=str(tmp_path / "site"))
  out = subprocess.run(
    [
      sys.executable,
      "-c",
      "import sys, tokensift; print(tokensift.gin_dir()); "
      "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'tensorflow')))",
    ],
    cwd=tmp_path,
    env=env,
    capture_output=True,
    text=True,
    timeout=120,
  )
  assert out.returncode == 0, out.stderr[-2000:]
  gin_dir, heavy = out.stdout.splitlines()
  assert Path(gin_dir) == tmp_path / "site" / "tokensift"  # the installed copy, not this checkout
  assert heavy == "[]"  # import tokensift stays light
  installed = sorted(p.relative_to(gin_dir).as_posix() for p in Path(gin_dir, "gin_configs").rglob("*.gin"))
  assert installed == GIN
  for name in installed:  # every `include 'gin_configs/...'` resolves under the search path
    for inc in _includes(Path(gin_dir, name).read_text()):
      assert Path(gin_dir, inc).is_file(), (name, inc)


def test_repo_root_is_the_checkout_wherever_the_program_runs(tmp_path, monkeypatch):
  """An editable install finds its checkout (and so ../shared/data) from any working directory."""
  from pathlib import Path

  from tokensift.core import paths

  monkeypatch.chdir(tmp_path)
  assert paths.repo_root() == Path(__file__).resolve().parents[1]
