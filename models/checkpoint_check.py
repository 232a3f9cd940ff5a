"""Checks a loaded parameter tree against the tree a network expects, naming every offending tensor."""

from __future__ import annotations

from typing import Any, Mapping

import flax.traverse_util as tu
import jax


class CheckpointError(ValueError):
  """A checkpoint that does not fit the network: missing, unexpected or mis-shaped tensors, or an unknown
  architecture. The message lists the offending names."""


def flat(tree: Mapping[str, Any]) -> dict[str, Any]:
  """``{'a': {'b': x}}`` -> ``{'a/b': x}``."""
  return {"/".join(k): v for k, v in tu.flatten_dict(dict(tree)).items()}


def check_tree(expected: Mapping[str, Any], got: Mapping[str, Any], *, source: str) -> None:
  """Raises CheckpointError unless ``got`` has exactly ``expected``'s leaves with the same shapes.

  ``expected`` may hold arrays or ``jax.ShapeDtypeStruct`` (e.g. from ``jax.eval_shape`` of an init).
  """
  want = {k: tuple(v.shape) for k, v in flat(expected).items()}
  have = {k: tuple(getattr(v, "shape", ())) for k, v in flat(got).items()}
  missing = sorted(set(want) - set(have))
  extra = sorted(set(have) - set(want))
  bad = sorted(f"{k}: expected {want[k]}, got {have[k]}" for k in set(want) & set(have) if want[k] != have[k])
  if missing or extra or bad:
    parts = []
    if missing:
      parts.append(f"missing tensors: {', '.join(missing)}")
    if extra:
      parts.append(f"unexpected tensors: {', '.join(extra)}")
    if bad:
      parts.append(f"mis-shaped tensors: {'; '.join(bad)}")
    raise CheckpointError(f"checkpoint {source} does not fit the network: " + " | ".join(parts))


def abstract_params(module, *init_args, **init_kwargs) -> Any:
  """Shapes/dtypes of ``module``'s params (unboxed) without computing anything."""
  import flax.linen as nn

  return jax.eval_shape(lambda: nn.unbox(module.init(jax.random.PRNGKey(0), *init_args, **init_kwargs)["params"]))
