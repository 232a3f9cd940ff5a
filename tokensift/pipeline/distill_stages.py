"""ASK-LLM distilled in the main job (``ScoreConfig.judge_docs``): the judge scores a hash-chosen part of the
refined pool (``judged_ids``), the ``distill`` stage fits a head on those documents' embeddings
(``selection.distill``), measures it on the judged documents it held out, and scores the rest of the pool with
it. ``score_records`` is the one reader of ASK-LLM scores for every later stage (select's ASK-LLM pool, the
ablations' ASK-LLM data set, detection, the report): the judge's record where the judge scored the document,
the head's elsewhere. Judge and head are on one scale: a head predicts the judge's logit of P(yes) and its
records carry ``score`` = sigmoid of that, as the judge's carry P(yes).

Stage folder ``distill/``: ``head/`` (``head.safetensors``, ``head.json``, ``fidelity.json``: Spearman, Kendall
and top-k overlap against the judge on the held-out judged documents), ``head_scores/`` (the head over every
embedded document: the ``tokensift score --head`` job, the judge's schema plus ``scorer``) and ``scores.jsonl``
(the merged score file, one record per refined document, which ``select_job.select(askllm_scores=...)`` reads).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from tokensift.core import jobs
from tokensift.pipeline.context import Context

JUDGE_KEY = "judge"  # the hash key of the judged part (independent of the head's hold-out, keyed by its seed)
MERGED = "scores.jsonl"


def judged_ids(ids: Sequence[str], judge_docs: int | None) -> set[str]:
  """The documents the judge scores: all of ``ids`` when ``judge_docs`` is None or not below their number, else
  the ``judge_docs`` with the smallest ``selection.distill.id_hash(ids, "judge")`` (ties by id). The part is fixed
  by the ids alone (no dependence on their order) and nested in ``judge_docs``."""
  from tokensift.selection import distill

  ids = [str(i) for i in ids]
  if judge_docs is None or judge_docs >= len(set(ids)):
    return set(ids)
  u = distill.id_hash(ids, JUDGE_KEY)
  order = sorted(set(zip(u.tolist(), ids)))
  return {i for _, i in order[:judge_docs]}


def merge_records(judge: Iterable[Mapping[str, Any]], head: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
  """One record per id: the judge's (``scorer`` "judge" added) where it has one, else the head's; in the head
  records' order (every embedded document), then any judged id the head lacks. The first record of a repeated
  id counts."""
  by_judge: dict[str, dict[str, Any]] = {}
  for r in judge:
    by_judge.setdefault(str(r["id"]), dict(r, scorer=r.get("scorer") or "judge"))
  out, seen = [], set()
  for r in head:
    i = str(r["id"])
    if i not in seen:
      seen.add(i)
      out.append(by_judge.get(i) or dict(r))
  out += [r for i, r in by_judge.items() if i not in seen]
  return out


def enabled(ctx: Context) -> bool:
  return ctx.config.score.judge_docs is not None


def askllm_scores(ctx: Context) -> Path:
  """The ASK-LLM score file or job directory every consumer reads: the merged file with a ``distill`` stage,
  else the score stage's job output."""
  return ctx.dir("distill") / MERGED if enabled(ctx) else ctx.dir("score")


def score_records(ctx: Context) -> dict[str, dict[str, Any]]:
  """id -> ASK-LLM record (``score``, ``logp_yes``, ``logp_no`` (None from the head), ``tokens``, ``scorer``):
  the judge's where it scored the document, the distilled head's elsewhere (read once per run)."""
  key = "askllm_records"
  if key not in ctx.cache:
    from tokensift.selection import topk

    ctx.cache[key] = {str(r["id"]): r for r in topk.load_score_records(askllm_scores(ctx))}
  return ctx.cache[key]


def is_head(record: Mapping[str, Any]) -> bool:
  """Whether a score record comes from a distilled head (``selection.distill.Head.scorer``), not the judge."""
  return str(record.get("scorer") or "").startswith("distilled:")


def scorer_counts(records: Iterable[Mapping[str, Any]]) -> dict[str, int]:
  """How many of ``records`` the judge scored and how many the distilled head."""
  flags = [is_head(r) for r in records]
  return {"judge": len(flags) - sum(flags), "head": sum(flags)}


# ------------------------------------------------------------------------------------------------ stage


def config(ctx: Context) -> dict[str, Any]:
  s = ctx.config.score
  from tokensift.pipeline.config import as_json

  return {"judge_docs": s.judge_docs, "distill": as_json(s.distill_config())}


def run(ctx: Context, out: Path) -> dict[str, Any]:
  from tokensift.selection import distill, topk

  t0 = time.perf_counter()
  head, report = distill.distill(ctx.dir("score"), ctx.dir("embed"), out / "head", ctx.config.score.distill_config())
  t_fit = time.perf_counter() - t0
  res = distill.score_embeddings(out / "head", ctx.dir("embed"), out / "head_scores", progress=False)
  judge = topk.load_score_records(ctx.dir("score"))
  merged = merge_records(judge, topk.load_score_records(out / "head_scores"))
  jobs.atomic_write_bytes(out / MERGED, "".join(json.dumps(r) + "\n" for r in merged).encode())
  counts = scorer_counts(merged)
  toks = ctx.refined_tokens()
  return {
    "judged": counts["judge"],
    "head_scored": counts["head"],
    "head_records": res.stats.get("records"),
    "scorer": head.scorer,
    "head": {k: head.config.get(k) for k in ("head", "target", "train_docs", "heldout_docs", "alpha", "dim")},
    "fidelity": {k: report.get(k) for k in ("docs", "spearman", "kendall", "topk_overlap")},
    "fit_seconds": round(t_fit, 3),
    "docs_in": len(toks),
    "docs_out": len(merged),
    "tokens_in": sum(toks.values()),
    "tokens_out": sum(toks.get(str(r["id"]), 0) for r in merged),
  }


def read_fidelity(ctx: Context) -> dict[str, Any] | None:
  """The ``distill`` stage's fidelity report (None without that stage)."""
  path = ctx.dir("distill") / "head" / "fidelity.json"
  return json.loads(path.read_text()) if path.exists() else None


def fidelity_summary(fid: Mapping[str, Any]) -> dict[str, Any]:
  """The held-out figures of a fidelity report as plain floats (for the report's sentence)."""
  over = {k: v for k, v in (fid.get("topk_overlap") or {}).items() if v is not None}
  return {
    "docs": fid.get("docs"),
    "spearman": fid.get("spearman"),
    "kendall": fid.get("kendall"),
    "topk_overlap": over,
    "mean_topk_overlap": float(np.mean(list(over.values()))) if over else None,
  }
