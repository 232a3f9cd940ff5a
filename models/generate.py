"""Batched inference helpers for ``models.llama.Llama``: KV-cache greedy generation and last-token logits.

Both compile once per (module, padded shape) and reuse the executable: prompt lengths are padded up to a
multiple of ``LENGTH_BUCKET`` so that a job scoring or refining many batches compiles only a few times. With a
``mesh``, the batch is split over its 'data' axis (padded to a multiple of it) and the logical-axis rules are in
scope so that activation constraints inside the layers bind to the mesh; params must already be placed
(``partitioning.place_params``) or be host arrays (then jit replicates them).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from tokensift.models import partitioning

LENGTH_BUCKET = 32


def _bucket(n: int, multiple: int = LENGTH_BUCKET) -> int:
  return max(multiple, -(-n // multiple) * multiple)


@contextlib.contextmanager
def _scope(mesh: Mesh | None, rules):
  if mesh is None:
    yield
  else:
    with partitioning.mesh_rules(mesh, rules):  # the one mesh context (activation constraints bind)
      yield


def _put_batch(x: np.ndarray, mesh: Mesh | None):
  if mesh is None:
    return jnp.asarray(x)
  return jax.device_put(x, partitioning.batch_sharding(mesh, x.ndim))


def _batch_multiple(mesh: Mesh | None) -> int:
  return 1 if mesh is None else int(mesh.shape["data"])


def _pad_rows(rows: Sequence[Sequence[int]], length: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
  """Right-pads token rows with 0 to ``[batch, length]``; extra rows are a single 0 token."""
  tokens = np.zeros((batch, length), np.int32)
  lengths = np.ones((batch,), np.int32)
  for i, row in enumerate(rows):
    tokens[i, : len(row)] = row
    lengths[i] = len(row)
  return tokens, lengths


# ------------------------------------------------------------------------------------------ last-token logits


def _last_logits(module, tokens, lengths):
  hidden = module.hidden_states(tokens)  # [b, l, D]
  last = jnp.take_along_axis(hidden, (lengths - 1)[:, None, None], axis=1)[:, 0]  # [b, D]
  return module.logits(last)


@functools.lru_cache(maxsize=32)
def _last_logits_fn(module):
  return jax.jit(lambda params, tokens, lengths: module.apply({"params": params}, tokens, lengths, method=_last_logits))


def last_token_logits(
  module: nn.Module, params: Any, tokens, lengths, *, mesh: Mesh | None = None, rules: str = "standard"
) -> jax.Array:
  """Logits predicting the token after position ``lengths - 1`` of each right-padded row.

  tokens: int32[batch, length] (padding after ``lengths`` is ignored: attention is causal);
  lengths: int32[batch] in [1, length]. Returns float32 [batch, vocab]. Only the selected positions are
  projected onto the vocabulary.
  """
  tokens = np.asarray(tokens, np.int32)
  lengths = np.asarray(lengths, np.int32)
  if tokens.ndim != 2 or lengths.shape != tokens.shape[:1]:
    raise ValueError(f"tokens must be [batch, length] and lengths [batch]; got {tokens.shape} and {lengths.shape}")
  if lengths.size and (lengths.min() < 1 or lengths.max() > tokens.shape[1]):
    raise ValueError(f"lengths must lie in [1, {tokens.shape[1]}]; got min {lengths.min()} max {lengths.max()}")
  b = tokens.shape[0]
  padded_b = -(-b // _batch_multiple(mesh)) * _batch_multiple(mesh)
  if padded_b != b:
    tokens = np.concatenate([tokens, np.zeros((padded_b - b, tokens.shape[1]), np.int32)])
    lengths = np.concatenate([lengths, np.ones((padded_b - b,), np.int32)])
  with _scope(mesh, rules):
    out = _last_logits_fn(module)(params, _put_batch(tokens, mesh), _put_batch(lengths, mesh))
  return out[:b]


# ---------------------------------------------------------------------------------------- greedy generation


def _prefill(module, tokens, lengths):
  hidden = module.hidden_states(tokens, prefill=True, prefill_lengths=lengths)
  last = jnp.take_along_axis(hidden, (lengths - 1)[:, None, None], axis=1)[:, 0]
  return module.logits(last)  # [b, vocab]


@functools.lru_cache(maxsize=32)
def _generate_fn(module, batch: int, prompt_len: int, max_new_tokens: int):
  cache_len = prompt_len + max_new_tokens

  def run(params, tokens, lengths, stop):  # stop: int32 scalar eos id (-1: none); traced, so no recompile
    shapes = jax.eval_shape(
      lambda: module.apply(
        {"params": params}, jnp.zeros((batch, cache_len), jnp.int32), decode=True, mutable=["cache"]
      )[1]["cache"]
    )
    cache = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    logits, state = module.apply(
      {"params": params, "cache": cache}, tokens, lengths, method=_prefill, mutable=["cache"]
    )
    first = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    out = jnp.zeros((batch, max_new_tokens), jnp.int32).at[:, 0].set(first)

    def cond(carry):
      step, _, _, _, done = carry
      return (step < max_new_tokens) & ~jnp.all(done)

    def body(carry):
      step, token, cache, out, done = carry
      logits, state = module.apply({"params": params, "cache": cache}, token[:, None], decode=True, mutable=["cache"])
      nxt = jnp.where(done, 0, jnp.argmax(logits[:, 0], axis=-1).astype(jnp.int32))
      out = out.at[:, step].set(nxt)
      return step + 1, nxt, state["cache"], out, done | (nxt == stop)

    carry = (jnp.int32(1), first, state["cache"], out, first == stop)
    _, _, _, out, _ = jax.lax.while_loop(cond, body, carry)
    return out

  return jax.jit(run)


def greedy_generate(
  module: nn.Module,
  params: Any,
  prompts: Sequence[Sequence[int]],
  *,
  max_new_tokens: int,
  eos_id: int | None,
  mesh: Mesh | None = None,
  rules: str = "standard",
) -> list[list[int]]:
  """Greedy (argmax) continuation of each prompt, batched with a key/value cache.

  prompts: token-id lists (each non-empty, any lengths: decoded in one batch). Returns, per prompt, only the
  new tokens: at most ``max_new_tokens``, ending before ``eos_id`` (the eos itself is not included). The loop
  stops early once every row has produced eos.
  """
  if max_new_tokens < 1:
    raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}")
  prompts = [list(map(int, p)) for p in prompts]
  if not prompts:
    return []
  empty = [i for i, p in enumerate(prompts) if not p]
  if empty:
    raise ValueError(f"prompts {empty[:10]} are empty: greedy generation needs at least one prompt token")
  prompt_len = _bucket(max(len(p) for p in prompts))
  m = _batch_multiple(mesh)
  batch = -(-len(prompts) // m) * m
  tokens, lengths = _pad_rows(prompts, prompt_len, batch)
  fn = _generate_fn(module, batch, prompt_len, int(max_new_tokens))
  stop = np.int32(-1 if eos_id is None else eos_id)
  with _scope(mesh, rules):
    out = np.asarray(fn(params, _put_batch(tokens, mesh), _put_batch(lengths, mesh), stop))
  results = []
  for row in out[: len(prompts)]:
    row = row.tolist()
    if eos_id is not None and eos_id in row:
      row = row[: row.index(eos_id)]
    results.append(row)
  return results
