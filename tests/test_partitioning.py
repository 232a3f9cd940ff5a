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
    w = self.param(
      "w",
      nn.with_logical_partitioning(nn.initializers.normal(), ("embed", "heads", "head_dim")),
      (x.shape[-1], self.heads, 4),
    )
    y = jnp.einsum("bd,dhk->bhk", x, w)
    return nn.with_logical_constraint(y, ("batch", "heads", "head_dim")).sum((1, 2))


@pytest.mark.parametrize(
  "heads,expected", [(8, P.PartitionSpec(None, "model", None)), (9, P.PartitionSpec(None, None, None))]
)
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
  assert partitioner._logical_axis_rules[: len(rules)] == rules  # the one table, first (flax takes the first rule)
  assert partitioner.data_partition_spec == P.PartitionSpec("data")


class _Activation(nn.Module):
  """Replicated params; only the activation constraint can put 'heads' on the 'model' axis."""

  @nn.compact
  def __call__(self, x):
    w = self.param("w", nn.initializers.normal(), (x.shape[-1], 8, 4))
    y = jnp.einsum("bd,dhk->bhk", x, w)
    return nn.with_logical_constraint(y, ("batch", "heads", "head_dim"))


def test_activation_constraint_reaches_the_compiled_computation():
  """The compiled program shards the constrained activation over 'model' (heads) and 'data' (batch). Under the
  legacy ``with mesh:`` flax drops the constraint and the output comes back replicated; values agree either
  way, so only the compiled shardings tell the two apart."""
  mesh = P.make_mesh(P.MeshConfig(data=4, model=2))
  module, x = _Activation(), jnp.ones((8, 6))
  params, shardings = P.sharded_init(module, mesh, x)
  assert params["w"].sharding.is_fully_replicated
  compiled = P.jit_apply(module, mesh, shardings).lower(params, x).compile()
  want = P.NamedSharding(mesh, P.PartitionSpec("data", "model", None))
  assert compiled.output_shardings.is_equivalent_to(want, 3), compiled.output_shardings
  hlo = compiled.as_text()
  assert "f32[2,4,4]" in hlo, "per-device activation block (8/4 batch, 8/2 heads, 4) missing from the program"
  out = P.jit_apply(module, mesh, shardings)(params, x)
  assert out.sharding.is_equivalent_to(want, 3)
  np.testing.assert_allclose(
    np.asarray(out), np.asarray(module.apply({"params": jax.device_get(params)}, x)), rtol=1e-6
  )


def test_t5x_partitioner_keeps_activation_constraints():
  """tokensift's t5x partitioner (jit under ``partitioning.mesh_rules``, the trainer's context) keeps the layers'
  activation constraints in the compiled t5x step, and reads ``None`` as replicated, as t5x's pjit did."""
  pytest.importorskip("t5x")
  from tokensift.rho1 import t5x_models

  partitioner = t5x_models.PjitPartitioner(num_partitions=2)
  module, x = _Activation(), jnp.ones((8, 6))
  params = module.init(jax.random.PRNGKey(0), x)["params"]
  fn = partitioner.partition(
    lambda p, v: module.apply({"params": p}, v),
    in_axis_resources=(P.PartitionSpec(), P.PartitionSpec("data")),
    out_axis_resources=P.PartitionSpec("data"),
  )
  compiled = partitioner.compile(fn, params, x)
  # out 'data' only: the heads split over 'model' exists in the program only if the constraint was kept
  assert "f32[2,4,4]" in compiled.as_text(), "activation not split over 'model' (constraint dropped)"
  assert compiled.output_shardings.is_equivalent_to(P.NamedSharding(partitioner.mesh, P.PartitionSpec("data")), 3)
  replicated = partitioner.compile(partitioner.partition(lambda v: v * 2, (None,), None), x)
  assert replicated.output_shardings.is_fully_replicated  # None reads as pjit read it: replicated
