"""scripts/check_floors.py: a floor is honest when every tested environment installs it or newer and one of them
installs that very release; the repository's own floors hold in this environment."""

import importlib.util
import sys

from packaging.requirements import Requirement
from packaging.version import Version

from conftest import REPO


def _module():
  spec = importlib.util.spec_from_file_location("check_floors", REPO / "scripts" / "check_floors.py")
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def test_covers_is_the_floors_release_to_its_precision():
  cf = _module()
  assert cf.covers(Version("2.21"), Version("2.21.1"))
  assert cf.covers(Version("0.12.8"), Version("0.12.8"))
  assert not cf.covers(Version("0.12.8"), Version("0.12.9"))
  assert not cf.covers(Version("4.44"), Version("5.25.0"))
  assert not cf.covers(Version("2.21"), Version("2.20.9"))


def test_findings_name_a_floor_above_an_environment_and_one_below_every_tested_version():
  cf = _module()
  reqs = [
    (Requirement("jax>=0.4.30"), True),
    (Requirement("flax>=0.12.12"), True),
    (Requirement("optax>=0.2.8"), True),
    (Requirement("absent-pkg>=1"), True),
    (Requirement("hypothesis>=6"), False),
    (Requirement("torch==2.13.0; python_version < '3.0'"), False),
  ]
  here = {"jax": "0.10.2", "flax": "0.12.8", "optax": "0.2.8"}
  other = {"jax": "0.12.0.1", "flax": "0.12.12", "optax": "0.2.8"}
  findings, notes = cf.check(reqs, here, [here, other])
  text = "\n".join(findings)
  assert "jax>=0.4.30: a floor below every tested version (0.10.2, 0.12.0.1)" in text
  assert "flax 0.12.8 installed, outside 'flax>=0.12.12'" in text
  assert "absent-pkg: not installed here" in text
  assert not any("optax" in f or "torch" in f for f in findings)
  assert notes == ["hypothesis: not installed here (requirement 'hypothesis>=6')"]
  # one environment alone cannot tell whether a floor is tested elsewhere: only installed >= floor is checked
  findings, _ = cf.check(reqs[:1], here, [here])
  assert findings == []


def test_the_repositorys_floors_hold_here():
  cf = _module()
  findings, _ = cf.check(
    cf.requirements(), cf.installed_versions(cf.requirements()), [cf.installed_versions(cf.requirements())]
  )
  assert findings == [], findings
  assert sys.version_info >= (3, 11)
