"""Test setup: 8 fake CPU devices (set before jax is imported), TensorFlow off any GPU, data paths."""

import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TOKENSIFT_DATA_DIR", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
  if not DATA.is_dir():
    pytest.fail(f"sample data not found at {DATA}; set TOKENSIFT_DATA_DIR")
  return DATA


@pytest.fixture(scope="session", autouse=True)
def _tf_cpu_only():
  try:
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
  except Exception:  # noqa: BLE001  (tests that never import TF still run)
    pass
  yield


@pytest.fixture(scope="session", autouse=True)
def _tasks_registered(_tf_cpu_only):
  """Test programs, like user programs, register the seqio tasks they read: the core reads tasks from seqio's
  registry and never imports the packages that register them (tests/test_corpus_scale.py's subprocess scripts
  show the one-import rule on their own)."""
  import tokensift.all_tasks  # noqa: F401

  yield


def pytest_collection_modifyitems(config, items):
  assert "jax" not in sys.modules or "--xla_force_host_platform_device_count" in os.environ["XLA_FLAGS"]


def pytest_sessionfinish(session, exitstatus):
  """TOKENSIFT_NO_SKIPS=1 (CI's t5x stage): a skipped test fails the run, so that a missing dependency cannot
  pass for a green stage."""
  if os.environ.get("TOKENSIFT_NO_SKIPS") != "1":
    return
  reporter = session.config.pluginmanager.get_plugin("terminalreporter")
  skipped = reporter.stats.get("skipped", []) if reporter else []
  if skipped and session.exitstatus == 0:
    print(
      f"\nTOKENSIFT_NO_SKIPS=1: {len(skipped)} test(s) skipped: "
      + "; ".join(str(r.longrepr[-1]) if isinstance(r.longrepr, tuple) else r.nodeid for r in skipped[:5])
    )
    session.exitstatus = 1
