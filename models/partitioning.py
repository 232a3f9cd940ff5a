"""The one logical-axis rules table, mesh construction and sharded init/apply helpers.

Layers name their parameter and activation axes logically (``nn.with_logical_partitioning`` on params,
``nn.with_logical_constraint`` on activations); this module maps those names onto a ``('data', 'model')``
mesh. FSDP is a rules change (``FSDP_RULES``), never a code change (after t5x ``standard_logical_axis_rules``).
This is the one table: the embedded trainer and the jobs read it here, and t5x launches read it through
``t5x_models.logical_axis_rules`` / ``t5x_models.PjitPartitioner`` (presets in ``gin_configs/partitioning/``).

Logical axis names used by tokensift layers:
  batch, length, embed, mlp, heads, kv_heads, head_dim, vocab, relpos_buckets, kv_length, layers (unused by
  rules; kept unsharded).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Sequence

import flax.linen as nn
from flax.linen import spmd  # with_logical_constraint and logical_to_mesh_axes: flax.linen does not re-export them
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Rules = tuple[tuple[str, Any], ...]
RulesArg = str | Sequence[tuple[str, Any]]  # a preset's name or a table (t5x passes its LogicalRules, a Sequence)

# Model (tensor) parallelism over 'model', data parallelism over 'data' (t5x's standard rules, 1-D model axis).
STANDARD_RULES: Rules = (
  ("batch", "data"),
  ("vocab", "model"),
  ("mlp", "model"),
  ("heads", "model"),
  ("kv_heads", None),  # multi-query / few kv heads: replicate rather than split 1-3 heads
  ("head_dim", None),
  ("embed", None),
  ("length", None),
  ("kv_length", None),
  ("relpos_buckets", None),
  ("layers", None),
)

# Fully-sharded data parallel: parameters' embed axis also split over 'data'.
FSDP_RULES: Rules = tuple(("embed", "data") if name == "embed" else (name, axis) for name, axis in STANDARD_RULES)

RULE_SETS = {"standard": STANDARD_RULES, "fsdp": FSDP_RULES}


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Mesh shape: ``data * model`` must equal the device count; ``data=-1`` means "the rest"."""

  data: int = -1
  model: int = 1
  rules: str = "standard"


def make_mesh(config: MeshConfig = MeshConfig(), devices: Sequence[jax.Device] | None = None) -> Mesh:  # pyright: ignore[reportInvalidTypeForm]  (jax.Device is a plain alias)
  """A ``('data', 'model')`` mesh over ``devices`` (default: all devices, e.g. 8 fake CPUs in tests)."""
  devices = list(devices if devices is not None else jax.devices())
  n = len(devices)
  model = config.model
  data = config.data if config.data != -1 else n // model
  if model < 1 or data < 1 or data * model != n:
    raise ValueError(f"mesh (data={config.data}, model={config.model}) does not fit {n} devices")
  return Mesh(np.asarray(devices).reshape(data, model), ("data", "model"))


def get_rules(name_or_rules: RulesArg = "standard") -> Rules:
  if isinstance(name_or_rules, str):
    if name_or_rules not in RULE_SETS:
      raise ValueError(f"unknown partitioning rules {name_or_rules!r}; known: {sorted(RULE_SETS)}")
    return RULE_SETS[name_or_rules]
  return tuple(name_or_rules)


@contextlib.contextmanager
def mesh_rules(mesh: Mesh, rules: RulesArg = "standard"):
  """The one mesh context: ``jax.set_mesh(mesh)`` with the logical ``rules`` in scope.

  Use it (not the legacy ``with mesh:``) around every trace of a tokensift layer: flax's
  ``nn.with_logical_constraint`` constrains an activation only when ``jax.sharding.get_abstract_mesh()`` is
  set, which ``with mesh:`` no longer does (jax >= 0.7), so under it every activation constraint is silently
  dropped (``tests/test_partitioning.py`` checks the compiled shardings). t5x launches enter the same context
  (``rho1.t5x_models.PjitPartitioner``).
  """
  with jax.set_mesh(mesh), nn.logical_axis_rules(get_rules(rules)):
    yield


def logical_shardings(abstract_tree: Any, mesh: Mesh, rules: RulesArg = "standard") -> Any:
  """NamedShardings for a (possibly abstract) tree of ``nn.LogicallyPartitioned`` boxes and plain arrays.

  Leaves without logical names are replicated, and so is any dimension whose size the mesh axes it maps
  to do not divide (e.g. SmolLM2's 9 heads on ``model=2``): replication is always correct, only less
  memory-efficient, whereas an uneven split cannot be placed at all.
  """
  rules = get_rules(rules)
  specs = nn.get_partition_spec(abstract_tree)
  shapes = jax.tree.map(lambda x: tuple(x.shape), nn.unbox(abstract_tree))

  def axis_size(axes) -> int:
    axes = axes if isinstance(axes, tuple) else (axes,)
    return int(np.prod([mesh.shape[a] for a in axes if a is not None]))

  def to_sharding(spec, shape):
    if not isinstance(spec, PartitionSpec):
      return NamedSharding(mesh, PartitionSpec())
    mesh_spec = spmd.logical_to_mesh_axes(tuple(spec), rules)
    fitted = [
      ax if ax is None or (i < len(shape) and shape[i] % axis_size(ax) == 0) else None
      for i, ax in enumerate(mesh_spec or ())
    ]
    return NamedSharding(mesh, PartitionSpec(*fitted))

  return jax.tree.map(to_sharding, specs, shapes, is_leaf=lambda x: isinstance(x, PartitionSpec) or x is None)


def sharded_init(
  module: nn.Module, mesh: Mesh, *init_args, rules: RulesArg = "standard", rng: jax.Array | None = None, **init_kwargs
) -> tuple[Any, Any]:
  """Initializes ``module`` directly into its sharded layout.

  Returns ``(params, shardings)``: unboxed params (plain arrays placed per the rules) and the matching tree
  of NamedShardings (to pass as ``in_shardings`` or to ``place_params``).
  """
  rng = jax.random.PRNGKey(0) if rng is None else rng
  rules_t = get_rules(rules)

  def init():
    return module.init(rng, *init_args, **init_kwargs)["params"]

  with nn.logical_axis_rules(rules_t):
    abstract = jax.eval_shape(init)
  # Outside the mesh: unboxing abstract params under an active mesh would apply constraints to them.
  shardings = logical_shardings(abstract, mesh, rules_t)
  with mesh_rules(mesh, rules_t):
    params = jax.jit(lambda: nn.unbox(init()), out_shardings=shardings)()
  return params, shardings


def param_shardings(module: nn.Module, mesh: Mesh, *init_args, rules: RulesArg = "standard", **init_kwargs) -> Any:
  """The NamedShardings a module's params take under ``rules`` (from an abstract init; no compute)."""
  rules_t = get_rules(rules)
  with nn.logical_axis_rules(rules_t):  # shapes only: no mesh needed
    abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), *init_args, **init_kwargs)["params"])
  return logical_shardings(abstract, mesh, rules_t)


def place_params(params: Any, shardings: Any) -> Any:
  """Puts a tree of host arrays (e.g. loaded from a checkpoint) onto devices per ``shardings``."""
  return jax.tree.map(lambda x, s: jax.device_put(x, s), params, shardings)


def batch_sharding(mesh: Mesh, ndim: int = 2) -> NamedSharding:
  """Sharding for an input batch ``[batch, ...]``: batch over 'data', the rest replicated."""
  return NamedSharding(mesh, PartitionSpec("data", *([None] * (ndim - 1))))


def jit_apply(
  module: nn.Module,
  mesh: Mesh,
  shardings: Any = None,
  *,
  rules: RulesArg = "standard",
  method: str | Callable | None = None,
  static_argnames: Sequence[str] = (),
  out_sharding: Any = None,
) -> Callable:
  """``jax.jit`` of ``module.apply({'params': p}, *args, method=...)`` traced under ``mesh_rules(mesh, rules)``,
  so activation constraints inside layers bind to this mesh.

  ``shardings``: the params' NamedShardings (from ``sharded_init`` / ``param_shardings``); params are placed
  per them before the call (a no-op for params already so placed, a transfer for host arrays). ``None``: jit
  follows the params' own layout.
  """
  rules_t = get_rules(rules)

  def fn(params, *args, **kwargs):
    return module.apply({"params": params}, *args, method=method, **kwargs)

  jitted = jax.jit(fn, out_shardings=out_sharding, static_argnames=tuple(static_argnames))

  def call(params, *args, **kwargs):
    if shardings is not None:
      params = place_params(params, shardings)
    with mesh_rules(mesh, rules_t):
      return jitted(params, *args, **kwargs)

  call.lower = lambda params, *args, **kwargs: _lower(jitted, mesh, rules_t, params, *args, **kwargs)
  return call


def _lower(jitted, mesh, rules, *args, **kwargs):
  with mesh_rules(mesh, rules):
    return jitted.lower(*args, **kwargs)
