"""Checks the version floors in pyproject.toml against what is installed and what CI tested.

A floor (``name>=X``) is honest when (1) every tested environment installs ``X`` or newer, and (2) some tested
environment installs ``X`` itself (a version whose release starts with ``X``'s: ``2.21`` is tested by ``2.21.1``),
so that no floor claims a version no CI run has exercised. CI runs this in both environments (DESIGN: Python 3.11
with the project's install, Python 3.12 with the real-t5x lock): the first writes its versions (``--write``), the
second reads them (``--tested``) and checks (2) over both.

  python scripts/check_floors.py --write /tmp/versions-py311.json
  python scripts/check_floors.py --tested /tmp/versions-py311.json

Requirements whose environment marker excludes this interpreter are not checked here; a dependency of the package
that is not installed fails; a test extra that is not installed (the t5x venv installs tokensift without them) is
listed and skipped. Exit 1 with one line per finding.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import platform
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def requirements(pyproject: Path = PYPROJECT) -> list[tuple[Requirement, bool]]:
  """(requirement, is_core) for [project] dependencies and the ``test`` extra."""
  project = tomllib.loads(pyproject.read_text())["project"]
  return [(Requirement(r), True) for r in project["dependencies"]] + [
    (Requirement(r), False) for r in project.get("optional-dependencies", {}).get("test", [])
  ]


def floor(req: Requirement) -> Version | None:
  lows = [Version(s.version) for s in req.specifier if s.operator == ">="]
  return max(lows) if lows else None


def covers(floor_version: Version, tested: Version) -> bool:
  """Whether ``tested`` exercises the floor: same release as the floor, to the floor's precision."""
  n = len(floor_version.release)
  return tested >= floor_version and tested.release[:n] == floor_version.release


def installed_versions(reqs: list[tuple[Requirement, bool]]) -> dict[str, str]:
  out = {}
  for req, _ in reqs:
    try:
      out[req.name] = md.version(req.name)
    except md.PackageNotFoundError:
      pass
  return out


def check(
  reqs: list[tuple[Requirement, bool]], here: dict[str, str], tested: list[dict[str, str]]
) -> tuple[list[str], list[str]]:
  """Returns (findings, notes). ``here``: this environment's versions; ``tested``: every tested environment's
  versions (this one included). Check (2) needs every environment: it runs only with more than one."""
  findings, notes = [], []
  for req, core in reqs:
    if req.marker is not None and not req.marker.evaluate():
      continue
    low = floor(req)
    if req.name not in here:
      (findings if core else notes).append(f"{req.name}: not installed here (requirement '{req}')")
      continue
    version = Version(here[req.name])
    if not req.specifier.contains(version, prereleases=True):
      findings.append(f"{req.name} {version} installed, outside '{req}'")
    if low is None:
      continue
    seen = sorted({Version(env[req.name]) for env in tested if req.name in env})
    if len(tested) > 1 and seen and not any(covers(low, v) for v in seen):
      findings.append(
        f"{req.name}>={low}: a floor below every tested version "
        f"({', '.join(map(str, seen))}); raise it to the lowest tested one"
      )
  return findings, notes


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--write", default=None, help="write this environment's versions (JSON) here")
  parser.add_argument("--tested", nargs="*", default=[], help="versions written by the other CI environments")
  args = parser.parse_args(argv)
  reqs = requirements()
  here = installed_versions(reqs)
  env_name = f"Python {platform.python_version()}"
  if args.write:
    Path(args.write).write_text(json.dumps({"python": platform.python_version(), "versions": here}, indent=1))
  others = [json.loads(Path(f).read_text()) for f in args.tested]
  findings, notes = check(reqs, here, [here] + [o["versions"] for o in others])
  for note in notes:
    print(f"check_floors ({env_name}): note: {note}")
  for finding in findings:
    print(f"check_floors ({env_name}): {finding}")
  envs = ", ".join([env_name] + [f"Python {o['python']}" for o in others])
  checked = sum(1 for r, _ in reqs if floor(r) is not None)
  scope = "installed >= floor" + (", each floor tested" if others else "")
  verdict = f"{len(findings)} finding(s)" if findings else "OK"
  print(f"check_floors: {checked} floors against {envs} ({scope}): {verdict}")
  return 1 if findings else 0


if __name__ == "__main__":
  sys.exit(main())
