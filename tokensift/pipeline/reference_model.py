"""Rho-1's reference model inside the main job (``ReferenceConfig.kind = 'trained'``): a model of the ablation
models' own kind (``ablations.AblationSteps``: same architecture, units and compact vocabulary), trained on the
training core on clean text that is disjoint from the pool and from the validation documents. Rho-1 trains its
reference on high-quality data with the trained model's tokenizer and compares losses token by token; here:

- its per-unit losses on each packed ablation row are SLM's reference losses (``ablations.run_ablations``'s
  ``reference``): the same units and contexts as the model it guides, nothing spread across tokenizers;
- its mean per-unit loss on each pool document (the document packed alone, as the models see text) is the log
  perplexity of the perplexity-filtering baseline (Ankner et al. 2024: a small reference model prunes data),
  ranked by the one perplexity selector (``selection.perplexity``).

Its training text (``reference_texts``): ``ReferenceConfig.train_files`` (paths relative to the data dir, e.g.
C4's validation sample) or the corpus task's ``train_split`` after the pool; every document whose id or text is
in the real pool or among the validation documents is dropped (counted), so the reference never sees them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tokensift.pipeline import ablation_data as ad
from tokensift.pipeline import ablations as ab

PARAMS_FILE, DOC_LOSSES_FILE, VOCAB_FILE = "reference.msgpack", "doc_losses.jsonl", "vocab.json"


def _key(text: str) -> str:
  return " ".join(text.split())


def disjoint(
  candidates: Sequence[tuple[str, str]], pool: Sequence[tuple[str, str]], validation: Sequence[str]
) -> tuple[list[tuple[str, str]], dict[str, int]]:
  """``candidates`` ``[(id, text)]`` without any whose id is a pool id or whose text (whitespace-normalised) is a
  pool or validation text; returns (kept, counts ``{candidates, pool_overlap, validation_overlap}``)."""
  pool_ids, pool_texts = {i for i, _ in pool}, {_key(t) for _, t in pool}
  val_texts = {_key(t) for t in validation}
  kept, in_pool, in_val = [], 0, 0
  for i, t in candidates:
    k = _key(t)
    if i in pool_ids or k in pool_texts:
      in_pool += 1
    elif k in val_texts:
      in_val += 1
    else:
      kept.append((i, t))
  return kept, {"candidates": len(candidates), "pool_overlap": in_pool, "validation_overlap": in_val}


def train_reference(
  cfg: ab.AblationConfig,
  steps: int,
  train_docs: list[dict[str, Any]],
  val_docs: list[dict[str, Any]],
  mapping: dict[int, int],
  work_dir: str | Path,
  *,
  seed: int = 0,
) -> tuple[Any, dict[str, Any], ab.AblationSteps]:
  """Trains one reference model (CLM, ``cfg``'s architecture, ``steps`` steps of ``cfg.batch_size`` x
  ``cfg.seq_len``) on ``train_docs`` (units: ``ablation_data.unit_docs``) in ``mapping``; evaluates on
  ``val_docs``. Returns (params of the one model, the training result: curves, ``final_val_ce``, and the compiled
  ``AblationSteps`` that scores with it: ``doc_log_ppl``)."""
  import jax

  rcfg = dataclasses.replace(cfg, steps=steps)
  trainer = ab.AblationSteps(rcfg, cfg.max_vocab)
  rows, val = ad.pack(train_docs, mapping, cfg.seq_len), ad.pack(val_docs, mapping, cfg.seq_len)
  states: dict[str, Any] = {}
  res = trainer.train("clm", rows, val, [seed], Path(work_dir), states=states)
  params = jax.tree_util.tree_map(lambda x: np.asarray(x[0]), states[str(Path(work_dir))]["params"])
  units = sum(len(d["tokens"]) for d in train_docs)
  res.update(docs=len(train_docs), units=units, positions=steps * cfg.batch_size * cfg.seq_len, steps=steps)
  res["epochs"] = res["positions"] / max(1, units)
  return params, res, trainer


def doc_log_ppl(
  trainer: ab.AblationSteps, params: Any, documents: Sequence[dict[str, Any]], mapping: dict[int, int]
) -> np.ndarray:
  """Mean per-unit loss (log perplexity) of each document packed alone: float64 [n] (NaN for an empty one)."""
  rows, owner = [], []
  for k, d in enumerate(documents):
    r = ad.pack([d], mapping, trainer.cfg.seq_len)
    rows.append(r)
    owner.append(np.full(r["tokens"].shape[0], k))
  if not rows:
    return np.zeros(0)
  tokens = np.concatenate([r["tokens"] for r in rows])
  weight = np.concatenate([r["weight"] for r in rows])[:, 1:]
  loss = trainer.unit_losses(params, tokens)[:, 1:]
  who = np.concatenate(owner)
  tot = np.bincount(who, weights=(loss * weight).sum(axis=1), minlength=len(documents))
  cnt = np.bincount(who, weights=weight.sum(axis=1), minlength=len(documents))
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(cnt > 0, tot / np.maximum(cnt, 1), np.nan)


def save(out: Path, params: Any, mapping: dict[int, int]) -> None:
  from flax import serialization

  from tokensift.core.jobs import atomic_write_bytes

  atomic_write_bytes(out / PARAMS_FILE, serialization.msgpack_serialize(params))
  atomic_write_bytes(out / VOCAB_FILE, json.dumps(sorted(mapping.items())).encode())


def load(stage_dir: Path) -> tuple[Any, dict[int, int]]:
  """(params, mapping) a finished reference stage wrote."""
  from flax import serialization

  params = serialization.msgpack_restore((stage_dir / PARAMS_FILE).read_bytes())
  mapping = {int(a): int(b) for a, b in json.loads((stage_dir / VOCAB_FILE).read_text())}
  return params, mapping
