"""The rules table maps logical axes onto the mesh; uneven dimensions are replicated, not refused."""
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tokensift.models import partitioning as P


class _Heads(nn.Module):
  heads: int

  @nn.compact
  def __call__(self, x):
    w = self.param("w", nn.with_logical_partitioning(nn.initializers.normal(), ("embed", "heads", "head_dim")),
                   (x.shape[-1], self.heads, 4))
    y = jnp.einsum("bd,dhk->bhk", x, w)
    return nn.with_logical_constraint(y, ("batch", "heads", "head_dim")).sum((1, 2))


@pytest.mark.parametrize("heads,expected", [(8, P.PartitionSpec(None, "model", None)),
                                            (9, P.PartitionSpec(None, None, None))])
def test_uneven_dims_replicate(heads, expected):
  mesh = P.make_mesh(P.MeshConfig(data=4, model=2))
  x = jnp.ones((8, 6))
  params, shardings = P.sharded_init(_Heads(heads), mesh, x)
  assert params["w"].sharding.spec == expected
  out = P.jit_apply(_Heads(heads), mesh, shardings)(params, x)
  ref = _Heads(heads).apply({"params": jax.device_get(params)}, x)
  np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-6)


def test_fsdp_is_a_rules_change_and_bad_mesh_named():
  mesh = P.make_mesh(P.MeshConfig(data=4, model=2))
  params, _ = P.sharded_init(_Heads(8), mesh, jnp.ones((8, 8)), rules="fsdp")
  assert params["w"].sharding.spec == P.PartitionSpec("data", "model", None)
  with pytest.raises(ValueError, match="data=3, model=2"):
    P.make_mesh(P.MeshConfig(data=3, model=2))
  with pytest.raises(ValueError, match="'nope'"):
    P.get_rules("nope")


PRESETS = sorted((Path(__file__).resolve().parent.parent / "gin_configs" / "partitioning").glob("*.gin"))


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.stem)
def test_partitioning_presets_build_their_mesh_on_8_devices(preset):
  """Each t5x partitioning preset (gin) builds a (data, model) mesh on the 8 fake CPU devices with tokensift's
  rules table (skips where t5x is not installed)."""
  pytest.importorskip("t5x")
  import gin
  from tokensift.rho1 import t5x_models
  gin.clear_config()
  try:
    gin.parse_config_files_and_bindings([str(preset)], None)
    bindings = gin.get_bindings("t5x_models.PjitPartitioner")  # what %PARTITIONER gets in a launch
    partitioner = t5x_models.PjitPartitioner(**bindings)
    text = preset.read_text()
  finally:
    gin.clear_config()
  mesh = partitioner.mesh
  want_model = 1
  for line in text.splitlines():
    if line.startswith("t5x_models.PjitPartitioner.num_partitions = ") and "None" not in line:
      want_model = int(line.rsplit("=", 1)[1])
    if line.startswith("t5x_models.PjitPartitioner.model_parallel_submesh = ") and "None" not in line:
      want_model = int(np.prod(eval(line.rsplit("=", 1)[1])))  # noqa: S307 - a literal tuple of the preset
  assert dict(mesh.shape) == {"data": 8 // want_model, "model": want_model}
  rules = P.FSDP_RULES if bindings["rules"] == "fsdp" else P.STANDARD_RULES
  assert partitioner._logical_axis_rules[:len(rules)] == rules  # the one table, first (flax takes the first rule)
  assert partitioner.data_partition_spec == P.PartitionSpec("data")
