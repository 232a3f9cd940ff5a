"""Test setup: 8 fake CPU devices (set before jax is imported), TensorFlow off any GPU, data paths."""
import os
import sys
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

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


def pytest_collection_modifyitems(config, items):
  assert "jax" not in sys.modules or "--xla_force_host_platform_device_count" in os.environ["XLA_FLAGS"]
