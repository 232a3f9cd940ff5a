"""ASK-LLM scoring: pjit-sharded batched inference of P("yes") for decoder-only and encoder-decoder scorers.

Pure cores (jitted; params and batches laid out on a ``('data', 'model')`` mesh by the logical-axis rules of
``tokensift.models.partitioning``):
- ``decoder_only_logits``: one causal forward over right-padded prompts, logits of the token after each
  prompt's last position only (the vocabulary projection runs on ``[batch, D]``, not ``[batch, length, D]``);
- ``encoder_decoder_logits``: one encoder pass and one decoder step from the decoder start token 0 (T5);
- ``answer_logprobs``: full-vocabulary log-softmax at that position, gathered at the answer ids.

Batching (``plan_batches``, pure): prompts are sorted by length and cut into batches padded to bucket lengths
(a geometric ladder, powers of two, or a fixed list; ``BatchConfig``); every batch is full except the last,
which is padded to the next power-of-two multiple of the data-axis size. jit therefore compiles at most
``len(buckets) + log2(rows)`` shapes per piece, and batches carry little padding (~10% on C4).
Results do not depend on the batch plan beyond float rounding (tests: <= 1e-5 across batch sizes, bucketings
and meshes).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from tokensift.core import jobs
from tokensift.models import partitioning
from tokensift.selection import askllm_prompt as ap


# ----------------------------------------------------------------------------------------------- pure cores


def answer_logprobs(
  logits: jax.Array, yes: int, no: int, yes_variants: Sequence[int] = (), no_variants: Sequence[int] = ()
) -> dict[str, jax.Array]:
  """logits: float[batch, vocab] at the first answer position -> dict of float32[batch]:
  ``logp_yes``, ``logp_no`` (full-vocabulary log-softmax) and, when variant ids are given,
  ``logp_yes_variants``/``logp_no_variants`` (log of the summed probabilities of those ids)."""
  logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
  out = {"logp_yes": logp[:, yes], "logp_no": logp[:, no]}
  if yes_variants:
    out["logp_yes_variants"] = jax.nn.logsumexp(logp[:, jnp.asarray(yes_variants)], axis=-1)
  if no_variants:
    out["logp_no_variants"] = jax.nn.logsumexp(logp[:, jnp.asarray(no_variants)], axis=-1)
  return out


def _llama_last_logits(module, tokens, lengths):
  """Bound-module method: tokens int[b, l] (right-padded), lengths int[b] -> float32 logits [b, vocab]."""
  hidden = module.hidden_states(tokens)  # causal: padding after lengths-1 never reaches the read position
  last = jnp.take_along_axis(hidden, (lengths - 1)[:, None, None].astype(jnp.int32), axis=1)[:, 0]
  return module.logits(last)


def decoder_only_logits(module: nn.Module, params: Any, tokens: jax.Array, lengths: jax.Array) -> jax.Array:
  """Next-token logits after each prompt. tokens: int32[batch, length] right-padded; lengths: int32[batch]
  (>= 1) -> float32[batch, vocab]."""
  return module.apply({"params": params}, tokens, lengths, method=_llama_last_logits)  # pyright: ignore[reportReturnType]  (apply without mutable: the output only)


def _t5_first_step(module, tokens):
  encoded = module.encode(tokens)
  start = jnp.zeros((tokens.shape[0], 1), jnp.int32)  # T5's decoder start token is the pad id 0
  return module.decode(encoded, tokens, start)[:, 0]


def encoder_decoder_logits(module: nn.Module, params: Any, tokens: jax.Array) -> jax.Array:
  """First decoder step logits. tokens: int32[batch, length] encoder inputs, 0 = padding -> float32[batch, vocab]."""
  return module.apply({"params": params}, tokens, method=_t5_first_step)  # pyright: ignore[reportReturnType]  (apply without mutable: the output only)


# ----------------------------------------------------------------------------------------------- bucketing


@dataclasses.dataclass(frozen=True)
class BatchConfig:
  """Batch shapes.

  Bucket lengths: ``buckets`` (fixed, strictly increasing; the last must be >= every prompt), or a geometric
  ladder from ``min_bucket`` growing by ``bucket_growth`` and rounded up to a multiple of ``bucket_multiple``,
  ending at ``max_length`` (``bucket_growth=2`` with a power-of-two ``min_bucket`` gives powers of two; the
  default 1.25 pads C4 prompts ~10% instead of ~25% for a few more compiled shapes).
  Rows per batch: ``tokens_per_batch // bucket`` rounded down to a power of two, clamped to
  [1, ``max_batch``], then to a multiple of the data axis.
  """

  tokens_per_batch: int = 16384
  max_batch: int = 64
  min_bucket: int = 64
  bucket_growth: float = 1.25
  bucket_multiple: int = 32
  buckets: tuple[int, ...] | None = None

  def __post_init__(self):
    if min(self.tokens_per_batch, self.max_batch, self.min_bucket, self.bucket_multiple) < 1:
      raise ValueError(f"BatchConfig needs positive sizes, got {self}")
    if not self.bucket_growth > 1:
      raise ValueError(f"bucket_growth={self.bucket_growth} must be > 1")
    if self.buckets is not None and (not self.buckets or list(self.buckets) != sorted(set(self.buckets))):
      raise ValueError(f"buckets {self.buckets} must be strictly increasing")


def bucket_lengths(max_length: int, cfg: BatchConfig) -> tuple[int, ...]:
  """The padded lengths batches can take (see ``BatchConfig``)."""
  if cfg.buckets is not None:
    return tuple(cfg.buckets)
  m = cfg.bucket_multiple
  out, b = [], -(-cfg.min_bucket // m) * m
  while b < max_length:
    out.append(b)
    b = max(b + m, -(-int(math.ceil(b * cfg.bucket_growth)) // m) * m)
  return tuple(out) + (max_length,)


def _pow2_floor(n: int) -> int:
  return 1 << (max(1, n).bit_length() - 1)


def rows_for(bucket: int, cfg: BatchConfig, data_size: int) -> int:
  """Rows of a full batch of ``bucket``-length prompts: a power of two, a multiple of ``data_size``."""
  rows = min(cfg.max_batch, max(1, cfg.tokens_per_batch // bucket))
  rows = _pow2_floor(rows)
  return max(data_size, rows // data_size * data_size)


@dataclasses.dataclass(frozen=True)
class Batch:
  """Prompts ``indices`` (into the input list) padded to ``[rows, length]``; rows beyond them are dummies."""

  indices: tuple[int, ...]
  length: int
  rows: int


def plan_batches(lengths: Sequence[int], max_length: int, cfg: BatchConfig, data_size: int = 1) -> list[Batch]:
  """Sorts prompts by length (stable) and cuts the sorted list into batches.

  A batch takes the next prompts while they fit ``rows_for(bucket of its longest prompt)`` rows, so batches
  are full except the last, and its length is the bucket of its longest prompt (sorted neighbours have
  similar lengths: little padding). The last batch's rows are padded to the next power-of-two multiple of
  ``data_size``. Raises ValueError naming a prompt longer than the largest bucket.
  """
  buckets = bucket_lengths(max_length, cfg)

  def bucket_of(i):
    b = next((b for b in buckets if b >= lengths[i]), None)
    if b is None:
      raise ValueError(f"prompt #{i} has {lengths[i]} tokens, more than the largest bucket {buckets[-1]}")
    return b

  order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
  batches: list[Batch] = []
  pos = 0
  while pos < len(order):
    members: list[int] = []
    bucket = bucket_of(order[pos])
    while pos < len(order):
      b = bucket_of(order[pos])
      if len(members) + 1 > rows_for(b, cfg, data_size):
        break
      members.append(order[pos])
      bucket = b
      pos += 1
    full = rows_for(bucket, cfg, data_size)
    rows = full
    if len(members) < full:  # the last batch: next power-of-two multiple of the data axis
      rows = min(full, data_size * (1 << max(0, math.ceil(math.log2(math.ceil(len(members) / data_size))))))
    batches.append(Batch(tuple(members), bucket, rows))
  return batches


def pad_batch(prompts: Sequence[Sequence[int]], batch: Batch, pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """tokens int32[rows, length] right-padded with ``pad_id``, lengths int32[rows] (dummy rows: length 1)."""
  tokens = np.full((batch.rows, batch.length), pad_id, np.int32)
  lengths = np.ones((batch.rows,), np.int32)
  for r, i in enumerate(batch.indices):
    ids = prompts[i]
    tokens[r, : len(ids)] = ids
    lengths[r] = len(ids)
  return tokens, lengths


# ----------------------------------------------------------------------------------------------- the scorer


@dataclasses.dataclass(frozen=True)
class ScoreRecord:
  """One document's result. ``score`` = P("yes") = exp(logp_yes)."""

  score: float
  logp_yes: float
  logp_no: float
  tokens: int
  truncated: bool
  logp_yes_variants: float | None = None
  logp_no_variants: float | None = None

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    return {k: v for k, v in d.items() if v is not None}


class AskLlmScorer:
  """A network, its params on a mesh, its tokenizer and prompt format; ``score(texts)`` does the rest.

  Args:
    architecture: ``"decoder_only"`` (Llama family) or ``"encoder_decoder"`` (T5 / FLAN-T5).
    module, params: the flax module and its params (host or device arrays in the module's tree layout).
    tokenizer: an ``askllm_prompt.PromptTokenizer``; fmt: the ``ChatFormat`` (context length, template).
    mesh: a ``('data', 'model')`` mesh (default: all local devices on 'data').
    variants: also compute the spelling-variant sums.
  """

  def __init__(
    self,
    architecture: str,
    module: nn.Module,
    params: Any,
    tokenizer: ap.PromptTokenizer,
    fmt: ap.ChatFormat,
    *,
    mesh: jax.sharding.Mesh | None = None,
    rules: str = "standard",
    batch: BatchConfig = BatchConfig(),
    variants: bool = True,
    pad_id: int = 0,
  ):
    if architecture not in ("decoder_only", "encoder_decoder"):
      raise ValueError(f"unknown scorer architecture {architecture!r}: 'decoder_only' or 'encoder_decoder'")
    self.architecture = architecture
    self.module, self.tokenizer, self.fmt, self.batch, self.pad_id = module, tokenizer, fmt, batch, pad_id
    self.mesh = mesh if mesh is not None else partitioning.make_mesh(partitioning.MeshConfig(), jax.local_devices())
    self.rules = partitioning.get_rules(rules)
    self.answers = ap.answer_ids(tokenizer)
    self.variants = variants
    example = self._example_inputs()
    shardings = partitioning.param_shardings(module, self.mesh, *example, rules=self.rules)
    self.params = partitioning.place_params(params, shardings)
    self._fn = self._build()
    bucket_lengths(fmt.max_length, batch)  # validates buckets early
    if batch.buckets is not None and batch.buckets[-1] < fmt.max_length:
      raise ValueError(f"largest bucket {batch.buckets[-1]} < max_length {fmt.max_length}")

  @property
  def data_size(self) -> int:
    return self.mesh.shape["data"]

  def _example_inputs(self):
    tokens = jnp.ones((1, 8), jnp.int32)
    if self.architecture == "decoder_only":
      return (tokens,)
    return (tokens, tokens)

  def _build(self):
    module, rules, a = self.module, self.rules, self.answers
    yv, nv = (a.yes_variants, a.no_variants) if self.variants else ((), ())

    if self.architecture == "decoder_only":

      def fn(params, tokens, lengths):
        with nn.logical_axis_rules(rules):
          logits = decoder_only_logits(module, params, tokens, lengths)
        return answer_logprobs(logits, a.yes, a.no, yv, nv)
    else:

      def fn(params, tokens, lengths):
        del lengths
        with nn.logical_axis_rules(rules):
          logits = encoder_decoder_logits(module, params, tokens)
        return answer_logprobs(logits, a.yes, a.no, yv, nv)

    return jax.jit(fn)

  def prompts(self, texts: Sequence[str]) -> list[ap.PromptIds]:
    return [ap.prompt_ids(t, self.tokenizer, self.fmt) for t in texts]

  def warmup(self, lengths: Sequence[int]) -> int:
    """Compiles (by running one dummy batch of each) the shapes that prompts of ``lengths`` will use;
    returns how many shapes there are."""
    shapes = sorted(
      {(b.rows, b.length) for b in plan_batches(lengths, self.fmt.max_length, self.batch, self.data_size)}
    )
    with jax.set_mesh(self.mesh):
      for rows, length in shapes:
        out = self._fn(
          self.params,
          jax.device_put(np.zeros((rows, length), np.int32), partitioning.batch_sharding(self.mesh, 2)),
          jax.device_put(np.ones((rows,), np.int32), partitioning.batch_sharding(self.mesh, 1)),
        )
        jax.block_until_ready(out)
    return len(shapes)

  def score_ids(self, prompts: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
    """Log-probs for already-built model inputs (each ``len <= fmt.max_length``) -> dict of float32[n]."""
    n = len(prompts)
    plan = plan_batches([len(p) for p in prompts], self.fmt.max_length, self.batch, self.data_size)
    in_sharding = partitioning.batch_sharding(self.mesh, 2)
    len_sharding = partitioning.batch_sharding(self.mesh, 1)
    pending = []
    # jax.set_mesh (not the legacy `with mesh:`) so flax's activation constraints bind to this mesh
    with jax.set_mesh(self.mesh):
      for b in plan:  # dispatch every batch first (async), then fetch: host work overlaps device work
        tokens, lengths = pad_batch(prompts, b, self.pad_id)
        out = self._fn(self.params, jax.device_put(tokens, in_sharding), jax.device_put(lengths, len_sharding))
        pending.append((b, out))
    result: dict[str, np.ndarray] = {}
    for b, out in pending:
      for k, v in out.items():
        arr = np.asarray(jax.device_get(v))
        dest = result.setdefault(k, np.full((n,), np.nan, np.float32))
        dest[list(b.indices)] = arr[: len(b.indices)]
      jobs.advance(len(b.indices))  # the score job's bar moves per batch (a no-op outside a job)
    return result

  def score(self, texts: Sequence[str]) -> list[ScoreRecord]:
    """Scores documents (any order, any lengths) -> one ScoreRecord each, in input order."""
    built = self.prompts(texts)
    out = self.score_ids([p.ids for p in built])
    recs = []
    for i, p in enumerate(built):
      ly, ln = float(out["logp_yes"][i]), float(out["logp_no"][i])
      recs.append(
        ScoreRecord(
          score=float(np.exp(np.float32(ly))),
          logp_yes=ly,
          logp_no=ln,
          tokens=len(p.ids),
          truncated=p.truncated,
          logp_yes_variants=float(out["logp_yes_variants"][i]) if "logp_yes_variants" in out else None,
          logp_no_variants=float(out["logp_no_variants"][i]) if "logp_no_variants" in out else None,
        )
      )
    return recs
