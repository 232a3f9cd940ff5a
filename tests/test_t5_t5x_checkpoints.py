"""T5X checkpoint directories: the tensorstore layout t5x's Checkpointer writes (``checkpoint`` msgpack whose
leaves are zarr specs under ``target.*``) and the orbax layout (``checkpoint_N/state``), written here with
tensorstore / orbax from the real T5X test checkpoint's tree, then loaded with ``load_t5``."""

import copy

import numpy as np
import pytest
from flax import serialization

from tokensift.models import t5_loaders
from tokensift.models.checkpoint_check import CheckpointError, flat

ts = pytest.importorskip("tensorstore")


def write_t5x_tensorstore_checkpoint(ckpt_dir, target, step=100):
  """Writes ``target`` as t5x ``Checkpointer.save`` does: partitioned (here: >= 2-D) arrays to zarr
  arrays named ``target.<path with dots>`` with a relative-path spec in the msgpack; the rest inline."""
  ckpt_dir.mkdir(parents=True)

  def leaf(keys, arr):
    arr = np.asarray(arr)
    if arr.ndim < 2:
      return arr
    rel = ".".join(("target",) + keys)
    spec = {
      "driver": "zarr",
      "dtype": arr.dtype.name,
      "kvstore": {"driver": "file", "path": rel},
      "metadata": {
        "compressor": {"id": "gzip"},
        "shape": list(arr.shape),
        "chunks": [max(1, arr.shape[0] // 2)] + list(arr.shape[1:]),
      },
    }
    absolute = copy.deepcopy(spec)
    absolute["kvstore"]["path"] = str(ckpt_dir / rel)
    store = ts.open(absolute, create=True, delete_existing=True).result()
    store.write(arr).result()
    return spec

  written = {}
  for name, arr in flat(target).items():
    node = written
    keys = tuple(name.split("/"))
    for k in keys[:-1]:
      node = node.setdefault(k, {})
    node[keys[-1]] = leaf(keys, arr)
  contents = {"version": 3, "optimizer": {"target": written, "state": {"step": np.int32(step)}}}
  (ckpt_dir / "checkpoint").write_bytes(serialization.msgpack_serialize(contents))
  return ckpt_dir


@pytest.fixture(scope="module")
def tiny(data_dir):
  path = data_dir / "checkpoints" / "t5x_tiny.checkpoint_0"
  return t5_loaders.read_t5x_target(path), t5_loaders.load_t5(path)


def _same_params(a, b):
  fa, fb = flat(a), flat(b)
  assert sorted(fa) == sorted(fb)
  for k in fa:
    np.testing.assert_array_equal(np.asarray(fa[k]), np.asarray(fb[k]), err_msg=k)


def test_tensorstore_checkpoint_dir_loads(tiny, tmp_path):
  target, reference = tiny
  ckpt = write_t5x_tensorstore_checkpoint(tmp_path / "checkpoint_100", target)
  assert (ckpt / "target.encoder.layers_0.attention.query.kernel" / ".zarray").exists()
  raw = serialization.msgpack_restore((ckpt / "checkpoint").read_bytes())
  assert raw["optimizer"]["target"]["token_embedder"]["embedding"]["driver"] == "zarr"
  loaded = t5_loaders.load_t5(ckpt)
  assert loaded.config == reference.config
  _same_params(loaded.params, reference.params)
  enc, dec = np.array([[5, 6, 7, 1]]), np.array([[0, 9, 8]])
  out = loaded.module.apply({"params": loaded.params}, enc, dec)
  np.testing.assert_array_equal(out, reference.module.apply({"params": reference.params}, enc, dec))


def test_orbax_checkpoint_dir_loads(tiny, tmp_path):
  ocp = pytest.importorskip("orbax.checkpoint")
  target, reference = tiny
  state_dir = tmp_path / "checkpoint_7" / "state"  # t5x OrbaxCheckpointManagerInterface layout
  state_dir.parent.mkdir()
  ocp.PyTreeCheckpointer().save(state_dir, {"target": target, "state": {"step": np.int32(7)}})
  loaded = t5_loaders.load_t5(tmp_path / "checkpoint_7")
  _same_params(loaded.params, reference.params)


def test_bad_tensorstore_checkpoints(tiny, tmp_path):
  target, _ = tiny
  ckpt = write_t5x_tensorstore_checkpoint(tmp_path / "broken", target)
  import shutil

  shutil.rmtree(ckpt / "target.decoder.layers_1.mlp.wo.kernel")
  with pytest.raises(CheckpointError, match=r"target\.decoder\.layers_1\.mlp\.wo\.kernel"):
    t5_loaders.load_t5(ckpt)

  bad = {k: v for k, v in flat(target).items() if k != "encoder/layers_1/mlp/wi_1/kernel"}
  bad["encoder/layers_0/mlp/wo/kernel"] = np.zeros((16, 9), np.float32)
  bad["encoder/layers_0/mlp/surprise/kernel"] = np.zeros((2, 2), np.float32)
  nested = {}
  for k, v in bad.items():
    node = nested
    *parents, leaf = k.split("/")
    for p in parents:
      node = node.setdefault(p, {})
    node[leaf] = v
  ckpt = write_t5x_tensorstore_checkpoint(tmp_path / "misfit", nested)
  with pytest.raises(CheckpointError) as err:
    t5_loaders.load_t5(ckpt)
  msg = str(err.value)
  assert "missing tensors: encoder/layers_1/mlp/wi_1/kernel" in msg
  assert "unexpected tensors: encoder/layers_0/mlp/surprise/kernel" in msg
  assert "encoder/layers_0/mlp/wo/kernel: expected (16, 8), got (16, 9)" in msg

  empty = tmp_path / "empty_dir"
  empty.mkdir()
  with pytest.raises(CheckpointError, match="is not a T5X checkpoint"):
    t5_loaders.load_t5(empty)
