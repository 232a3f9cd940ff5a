"""seqio preprocessors that refine text inside tf.data with the pure executor.

The executor and the rule programmer are Python string functions, so they run through ``tf.numpy_function``
(tensorflow-text has no equivalent); to amortise the per-call overhead examples are refined in batches of
``batch_size`` (``ds.batch`` → one Python call → ``unbatch``), which keeps the order and needs the text
features to be scalars, as they are before tokenization. Dropped documents are filtered out.

Each refined example keeps ``id``, gets the refined text as ``text`` and the original as ``raw_text`` (and,
with ``keep_programs``, the programs that ran as ``doc_program``/``chunk_program``).
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import tensorflow as tf

from tokensift.refine import executor as ex
from tokensift.refine import rules

DEFAULT_BATCH = 32


def _to_str(b: bytes) -> str:
  return b.decode("utf-8", errors="surrogateescape")


def _to_bytes(s: str) -> bytes:
  try:
    return s.encode("utf-8", errors="surrogateescape")
  except UnicodeEncodeError:  # a lone surrogate written by a program: not representable, replace it
    return s.encode("utf-8", errors="replace")


def _refine_batch(
  texts: np.ndarray,
  doc_programs: np.ndarray | None,
  chunk_programs: np.ndarray | None,
  rule_config: rules.RuleConfig | None,
  exec_config: ex.ExecConfig,
):
  """texts: bytes[n] -> (refined bytes[n], kept bool[n], doc programs bytes[n], chunk programs bytes[n])."""
  flat = np.ravel(texts)
  out, kept, dps, cps = [], [], [], []
  for i, raw in enumerate(flat):
    text = _to_str(raw)
    if rule_config is not None:
      rp = rules.write_program(text, rule_config)
      dp, cp = rp.doc_program, rp.chunk_program
    else:
      dp = _to_str(np.ravel(doc_programs)[i]) if doc_programs is not None else None
      cp = _to_str(np.ravel(chunk_programs)[i]) if chunk_programs is not None else None
    r = ex.execute(text, dp, cp, exec_config)
    out.append(_to_bytes(r.text))
    kept.append(r.kept)
    dps.append(_to_bytes(dp or ""))
    cps.append(_to_bytes(cp or ""))
  shape = np.shape(texts)
  return (
    np.array(out, dtype=object).reshape(shape),
    np.array(kept, dtype=bool).reshape(shape),
    np.array(dps, dtype=object).reshape(shape),
    np.array(cps, dtype=object).reshape(shape),
  )


def _apply(
  ds: tf.data.Dataset,
  fn,
  inputs: Sequence[str],
  text_key: str,
  raw_key: str | None,
  keep_programs: bool,
  drop_dropped: bool,
  batch_size: int,
) -> tf.data.Dataset:
  def refine(ex_):
    ex_ = dict(ex_)
    refined, kept, dp, cp = tf.numpy_function(
      fn, [ex_[k] for k in inputs], (tf.string, tf.bool, tf.string, tf.string), stateful=False
    )
    shape = ex_[text_key].shape
    for t in (refined, kept, dp, cp):
      t.set_shape(shape)
    if raw_key:
      ex_[raw_key] = ex_[text_key]
    ex_[text_key] = refined
    if keep_programs:
      ex_["doc_program"], ex_["chunk_program"] = dp, cp
    return ex_, kept

  if batch_size > 1:

    def refine_batch(ex_):
      ex_, kept = refine(ex_)
      if drop_dropped:  # dropped documents leave the batch before it is split again
        ex_ = {k: tf.boolean_mask(v, kept) for k, v in ex_.items()}
      return ex_

    return ds.batch(batch_size).map(refine_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch()
  ds = ds.map(refine, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  if drop_dropped:
    ds = ds.filter(lambda ex_, kept: kept)  # pyright: ignore[reportArgumentType]  (a (features, kept) dataset: two arguments)
  return ds.map(lambda ex_, kept: ex_)


def refine_with_rules(
  ds: tf.data.Dataset,
  *,
  config: rules.RuleConfig = rules.RuleConfig(),
  exec_config: ex.ExecConfig = ex.DEFAULT_CONFIG,
  text_key: str = "text",
  raw_key: str | None = "raw_text",
  keep_programs: bool = False,
  drop_dropped: bool = True,
  batch_size: int = DEFAULT_BATCH,
) -> tf.data.Dataset:
  """Writes a rule program per example on the fly and executes it (doc stage, then chunk stage)."""
  fn = functools.partial(
    _refine_batch, doc_programs=None, chunk_programs=None, rule_config=config, exec_config=exec_config
  )
  return _apply(ds, lambda t: fn(t), [text_key], text_key, raw_key, keep_programs, drop_dropped, batch_size)


def execute_programs(
  ds: tf.data.Dataset,
  *,
  doc_program_key: str | None = "doc_program",
  chunk_program_key: str | None = "chunk_program",
  exec_config: ex.ExecConfig = ex.DEFAULT_CONFIG,
  text_key: str = "text",
  raw_key: str | None = "raw_text",
  drop_dropped: bool = True,
  batch_size: int = DEFAULT_BATCH,
) -> tf.data.Dataset:
  """Executes the programs carried by each example (``doc_program_key``/``chunk_program_key`` features; a key
  set to None skips that stage)."""
  keys = [text_key] + [k for k in (doc_program_key, chunk_program_key) if k]

  def fn(*arrays):
    texts, rest = arrays[0], list(arrays[1:])
    dps = rest.pop(0) if doc_program_key else None
    cps = rest.pop(0) if chunk_program_key else None
    return _refine_batch(texts, dps, cps, None, exec_config)

  return _apply(ds, fn, keys, text_key, raw_key, False, drop_dropped, batch_size)
