"""What each method did to the known-answer corpus (DESIGN §12): the training data sets of the ablations and
every method's detection figures against the labels, read from a run's finished stages."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tokensift.core import jobs
from tokensift.pipeline import detection as det
from tokensift.pipeline.context import Context
from tokensift.selection import perplexity as ppl
from tokensift.selection.keep import PAPER_RATES, keep_count

RATES = tuple(float(r) for r in PAPER_RATES)
IPS_DRAWS = 50  # inverse-propensity samples averaged for DENSITY's expected cluster share


def token_losses(ctx: Context) -> dict[tuple[str, str], dict[str, Any]]:
  """(source, id) -> the perplexity stage's row (read once per run)."""
  if "token_losses" not in ctx.cache:
    ctx.cache["token_losses"] = {
      (r["source"], r["id"]): r for r in jobs.read_records(ctx.dir("perplexity") / "token_losses.jsonl")
    }
  return ctx.cache["token_losses"]


def scores(ctx: Context) -> dict[str, float]:
  """id -> ASK-LLM score (P(yes); the judge's where it scored the document, the distilled head's elsewhere)."""
  return {str(r["id"]): float(r["score"]) for r in score_records(ctx).values()}


def score_records(ctx: Context) -> dict[str, dict[str, Any]]:
  """id -> ASK-LLM record (``score``, ``logp_yes``, ``logp_no``, ``tokens``, ``scorer``): the merged judge + head
  scores of ``distill_stages.score_records`` (the score stage's alone without a ``distill`` stage)."""
  from tokensift.pipeline import distill_stages

  return distill_stages.score_records(ctx)


def askllm_diagnostics(recs: list[dict[str, Any]], labs: list[dict[str, Any]]) -> dict[str, Any]:
  """Why ASK-LLM ranks as it does: ROC AUC (clean over junk) of P("yes") against each junk kind alone, of the
  yes/no-normalised score P(yes) / (P(yes) + P(no)) (public re-implementations' readout; reported beside the
  paper's, not chosen by it), and the mean next-token mass on "yes" + "no" (how much the scorer answers the
  question at all) for clean and junk documents. The per-kind AUC and mean P(yes) take every record (judge and
  distilled head); the yes/no readouts only the judge's (a head predicts P(yes) alone: ``logp_no`` None), counted
  in ``judge_docs``."""
  junk = np.asarray([x["kind"] == "junk" for x in labs], bool)
  kinds = np.asarray([x["junk_kind"] or "" for x in labs])
  ly = np.asarray([r["logp_yes"] for r in recs], np.float64)
  judged = np.asarray([r.get("logp_no") is not None for r in recs], bool)
  ln = np.asarray([r["logp_no"] if j else np.nan for r, j in zip(recs, judged)], np.float64)
  norm = np.full_like(ly, np.nan)
  norm[judged] = ly[judged] - np.logaddexp(ly[judged], ln[judged])

  def per_kind(v, m):
    j, k_ = junk[m], kinds[m]
    return {k: det.roc_auc(v[m][~j | (k_ == k)], ~j[~j | (k_ == k)]) for k in sorted(set(kinds[junk]))}

  mass = np.exp(ly) + np.exp(ln)
  jc, jj = judged & ~junk, judged & junk
  return {
    "judge_docs": int(judged.sum()),
    "auc_by_junk_kind": per_kind(ly, np.ones_like(junk)),
    "auc_normalised": det.roc_auc(norm[judged], ~junk[judged]),
    "auc_normalised_by_junk_kind": per_kind(norm, judged),
    "yes_no_mass_clean": float(mass[jc].mean()) if jc.any() else None,
    "yes_no_mass_junk": float(mass[jj].mean()) if jj.any() else None,
    "p_yes_clean": float(np.exp(ly[~junk]).mean()) if (~junk).any() else None,
    "p_yes_junk": float(np.exp(ly[junk]).mean()) if junk.any() else None,
  }


def log_density(ctx: Context) -> dict[str, float]:
  import pyarrow.parquet as pq

  t = pq.read_table(ctx.dir("density") / "density.parquet").to_pydict()
  return dict(zip(map(str, t["id"]), map(float, t["log_density"])))


def _row(tl: dict, i: str) -> dict[str, Any]:
  return tl.get(("refined", i)) or tl[("raw", i)]


def refined_pool_ids(ctx: Context) -> list[str]:
  """Ids of the refined pool: every document the refine stage kept that the perplexity stage has units of."""
  tl = token_losses(ctx)
  return [
    str(r["id"])
    for r in ctx.refined_records()
    if r["kept"] and (("raw", str(r["id"])) in tl or ("refined", str(r["id"])) in tl)
  ]


def reference_log_ppl(ctx: Context) -> dict[tuple[str, str], float]:
  """(source, id) -> the reference model's log perplexity of that unit row: the trained reference's
  (``reference`` stage) or, with ``ReferenceConfig.kind = 'pretrained'``, the mean of its token losses."""
  key = "reference_log_ppl"
  if key not in ctx.cache:
    if ctx.config.reference.kind == "trained":
      from tokensift.pipeline.reference_model import DOC_LOSSES_FILE

      recs = jobs.read_records(ctx.dir("reference") / DOC_LOSSES_FILE)
      ctx.cache[key] = {
        (r["source"], r["id"]): (math.nan if r["log_ppl"] is None else float(r["log_ppl"])) for r in recs
      }
    else:
      tl = token_losses(ctx)
      ctx.cache[key] = dict(zip(tl, ppl.log_perplexity([r["ref_losses"] for r in tl.values()]).tolist()))
  return ctx.cache[key]


def pool_perplexity(ctx: Context) -> tuple[list[str], np.ndarray]:
  """(ids of the refined pool, reference-model log perplexity of each one's refined text)."""
  lp = reference_log_ppl(ctx)
  ids = refined_pool_ids(ctx)
  return ids, np.asarray([lp[("refined", i)] if ("refined", i) in lp else lp[("raw", i)] for i in ids], np.float64)


def data_sets(ctx: Context) -> tuple[dict[str, list[str]], dict[str, list[dict]]]:
  """(data set -> ids, data set -> token rows) for the ablations (the validation rows:
  ``evidence_stages.validation_rows``)."""
  from tokensift.pipeline.corpus_stages import selected_ids
  from tokensift.selection import samplers

  a, seed = ctx.config.ablation, ctx.config.selection.seed
  tl = token_losses(ctx)
  raw_ids = [i for (s, i) in tl if s == "raw"]
  pool, log_ppl = pool_perplexity(ctx)
  k = keep_count(len(pool), a.rate)
  sc, dens = scores(ctx), log_density(ctx)
  ids = {
    "contaminated": raw_ids,
    "refined_pool": pool,
    "random": [pool[i] for i in det.random_select(len(pool), a.rate, seed)],
    "askllm": [pool[i] for i in sorted(samplers.top_k(np.asarray([sc[i] for i in pool]), k))],
    "perplexity": [pool[i] for i in ppl.select_indices(log_ppl, a.rate, a.perplexity_mode)],
    "density": [
      pool[i]
      for i in sorted(samplers.inverse_propensity_sample(np.asarray([dens[i] for i in pool]), k, seed=seed, log=True))
    ],
    "combination": [i for i in selected_ids(ctx) if i in set(pool)],
  }
  rows = {
    name: [tl[("raw", i)] for i in v] if name == "contaminated" else [_row(tl, i) for i in v] for name, v in ids.items()
  }
  return ids, rows


# --------------------------------------------------------------------------------------------- detection


def prox_detection(ctx: Context, stage: str, labels: dict[str, dict]) -> dict[str, Any] | None:
  """Junk documents dropped and junk lines removed by one refine stage (precision/recall)."""
  if not jobs.shard_files(ctx.dir(stage), "refine"):
    return None
  recs = ctx.refined_records(stage)
  lab = [labels[str(r["id"])] for r in recs]
  docs = det.precision_recall([not r["kept"] for r in recs], [x["kind"] == "junk" for x in lab])
  pred, truth = [], []
  for r, x in zip(recs, lab):
    if x["kind"] == "junk":
      continue
    n = len(r["raw_text"].split("\n"))
    removed = set(det.removed_lines(r["raw_text"], r["text"] if r["kept"] else None))
    pred += [i in removed for i in range(n)]
    truth += [i in set(x["junk_lines"]) for i in range(n)]
  lines = det.precision_recall(pred, truth)
  by_kind: dict[str, list[bool]] = {}
  for r, x in zip(recs, lab):
    if x["kind"] == "junk":
      by_kind.setdefault(x["junk_kind"], []).append(not r["kept"])
  real = [not r["kept"] for r, x in zip(recs, lab) if x["kind"] != "junk"]
  return {
    "docs": docs,
    "lines": lines,
    "dropped_by_junk_kind": {k: float(np.mean(v)) for k, v in by_kind.items()},
    "clean_dropped": float(np.mean(real)),
    "real_docs": len(real),
    "real_dropped": int(sum(real)),
  }


REAL_DROPPERS = (("refine", "refiner"), ("refine_rules", "rules"))


def real_dropped(ctx: Context, labels: dict[str, dict] | None = None) -> dict[str, dict[str, Any]]:
  """Per refine stage that ran ('refiner': the ``refine`` stage, whatever its programmer; 'rules':
  ``refine_rules``): how many real documents it dropped, of how many, and the share. Real = not a synthetic junk
  document of the known-answer corpus (``labels``), or every pool document without labels."""
  out = {}
  for stage, who in REAL_DROPPERS:
    if not jobs.shard_files(ctx.dir(stage), "refine"):
      continue
    recs = ctx.refined_records(stage)
    real = [r for r in recs if not labels or (labels.get(str(r["id"])) or {}).get("kind") != "junk"]
    k = sum(not r["kept"] for r in real)
    name = ctx.config.refine.programmer if stage == "refine" else "rules"
    out[who] = {"programmer": name, "dropped": k, "docs": len(real), "share": k / len(real) if real else None}
  return out


def ranking_detection(values: np.ndarray, is_junk: np.ndarray, higher_is_better: bool) -> dict[str, Any]:
  s = values if higher_is_better else -values
  return {"auc_clean_over_junk": det.roc_auc(s, ~is_junk), "by_rate": det.kept_share_by_rate(s, is_junk, RATES)}


def scored_pool_perplexity(ctx: Context) -> tuple[list[str], np.ndarray]:
  """The refined pool's documents that ASK-LLM scored (the pool every selector ranks) and their reference-model
  log perplexity."""
  pool_all, lp_all = pool_perplexity(ctx)
  sc = scores(ctx)
  lp_by = dict(zip(pool_all, lp_all))
  pool = [i for i in pool_all if i in sc]
  return pool, np.asarray([lp_by[i] for i in pool])


def perplexity_by_junk_kind(log_ppl: np.ndarray, junk_kind: list[str | None], rates=RATES) -> dict[str, Any]:
  """Where each junk kind sits in the pool's perplexity order, and how much of it each perplexity filter keeps.

  ``junk_kind``: per document, its junk kind or None (not junk). Per kind: ``n`` documents; ``lowest``: the
  smallest share (%) of the pool, taken from the lowest perplexity up, that holds all of them; ``highest``: the
  same from the highest perplexity down; ``kept``: mode -> share of them kept at each rate."""
  log_ppl = np.asarray(log_ppl, np.float64)
  n = len(log_ppl)
  rank = np.empty(n, int)
  rank[np.argsort(log_ppl, kind="stable")] = np.arange(n)  # ppl.select_indices' order
  kinds = np.asarray([k or "" for k in junk_kind])
  kept = {}
  for mode in ppl.MODES:
    kept[mode] = []
    for r in rates:
      m = np.zeros(n, bool)
      m[ppl.select_indices(log_ppl, r, mode)] = True
      kept[mode].append(m)
  out = {}
  for k in sorted(set(kinds) - {""}):
    sel = kinds == k
    out[k] = {
      "n": int(sel.sum()),
      "lowest": float(100 * (rank[sel].max() + 1) / n),
      "highest": float(100 * (n - rank[sel].min()) / n),
      "kept": {mode: [float(m[sel].mean()) for m in ms] for mode, ms in kept.items()},
    }
  return out


def selection_detection(ctx: Context, labels: dict[str, dict]) -> dict[str, Any]:
  """ASK-LLM vs perplexity filtering (low/middle/high) vs random on the refined pool: junk kept per rate."""
  pool, log_ppl = scored_pool_perplexity(ctx)
  sc = scores(ctx)
  junk = np.asarray([labels[i]["kind"] == "junk" for i in pool])
  out = {
    "docs": len(pool),
    "junk_docs": int(junk.sum()),
    "askllm": ranking_detection(np.asarray([sc[i] for i in pool]), junk, True),
  }
  recs = score_records(ctx)
  out["askllm"].update(askllm_diagnostics([recs[i] for i in pool], [labels[i] for i in pool]))
  from tokensift.pipeline import distill_stages

  out["askllm"]["scorers"] = distill_stages.scorer_counts([recs[i] for i in pool])  # judge / distilled head
  for mode in ppl.MODES:
    rows = []
    for r in RATES:
      kept = np.zeros(len(pool), bool)
      kept[ppl.select_indices(log_ppl, r, mode)] = True
      rows.append(
        {
          "rate": r,
          "junk_kept": float(kept[junk].mean()) if junk.any() else None,
          "clean_kept": float(kept[~junk].mean()),
        }
      )
    out[f"perplexity_{mode}"] = {"by_rate": rows}
  out["perplexity_low"]["auc_clean_over_junk"] = det.roc_auc(-log_ppl, ~junk)
  rows = []
  for r in RATES:
    kept = np.zeros(len(pool), bool)
    kept[det.random_select(len(pool), r, ctx.config.selection.seed)] = True
    rows.append(
      {
        "rate": r,
        "junk_kept": float(kept[junk].mean()) if junk.any() else None,
        "clean_kept": float(kept[~junk].mean()),
      }
    )
  out["random"] = {"by_rate": rows}
  out["examples"] = {
    "askllm": _ranked(pool, [sc[i] for i in pool], labels),
    "perplexity": _ranked(pool, [-x for x in log_ppl], labels),
  }
  return out


def _ranked(ids: list[str], values: list[float], labels: dict[str, dict], n: int = 5) -> dict[str, list]:
  order = sorted(range(len(ids)), key=lambda i: (-values[i], i))
  pick = lambda idx: [{"id": ids[i], "value": float(values[i]), "label": _kind(labels[ids[i]])} for i in idx]
  return {"top": pick(order[:n]), "bottom": pick(order[-n:][::-1])}


def _kind(lab: dict) -> str:
  if lab["kind"] == "junk":
    return f"junk ({lab['junk_kind']})"
  if lab["kind"] == "dup":
    return f"near-duplicate (cluster {lab['cluster']})"
  extra = [w for w, on in (("junk lines", lab["junk_lines"]), ("noise span", lab["spans"])) if on]
  return "real" + (f" + {', '.join(extra)}" if extra else "")


def density_detection(ctx: Context, labels: dict[str, dict]) -> dict[str, Any]:
  """Share of each near-duplicate cluster kept by inverse-propensity sampling vs random at the same rate
  (mean over ``IPS_DRAWS`` seeded draws), and by the select stage's actual list."""
  from tokensift.pipeline.corpus_stages import selected_ids
  from tokensift.selection import samplers

  dens = log_density(ctx)
  ids = list(dens)
  cluster = [labels[i]["cluster"] for i in ids]
  k = keep_count(len(ids), ctx.config.ablation.rate)
  x = np.asarray([dens[i] for i in ids])
  ips, rnd = [], []
  for s in range(IPS_DRAWS):
    for acc, pick in (
      (ips, samplers.inverse_propensity_sample(x, k, seed=s, log=True)),
      (rnd, samplers.random_sample(len(ids), k, seed=s)),
    ):
      kept = np.zeros(len(ids), bool)
      kept[pick] = True
      acc.append(det.cluster_keep_share(kept, cluster))
  chosen = set(selected_ids(ctx))
  actual = det.cluster_keep_share([i in chosen for i in ids], cluster)
  clusters = sorted(actual)
  dup = np.asarray([c is not None for c in cluster])
  return {
    "rate": ctx.config.ablation.rate,
    "docs": len(ids),
    "bandwidth": ctx.summaries.get("density", {}).get("bandwidth"),
    "bandwidth_setting": ctx.config.selection.bandwidth,
    "kernel": ctx.config.selection.kernel,
    "clusters": {
      str(c): {
        "size": int(sum(cc == c for cc in cluster)),
        "ips": float(np.mean([d[c] for d in ips])),
        "random": float(np.mean([d[c] for d in rnd])),
        "select_stage": actual[c],
      }
      for c in clusters
    },
    "mean_log_density_dup": float(x[dup].mean()) if dup.any() else None,
    "mean_log_density_other": float(x[~dup].mean()) if (~dup).any() else None,
  }


def slm_detection(ablation: dict[str, Any], ratio: float) -> dict[str, Any] | None:
  """Rho-1 SLM on the contaminated pool: share of noise-span tokens vs clean tokens selected over training."""
  run = ablation.get("runs", {}).get("slm_contaminated")
  if not run or not run["slm_selection"]:
    return None
  curve = []
  for w in run["slm_selection"]:
    nt, ns, ct, cs = (float(np.sum(w[k])) for k in ("noise_tokens", "noise_selected", "clean_tokens", "clean_selected"))
    curve.append(
      {
        "step": w["step"],
        "noise_selected": ns / nt if nt else math.nan,
        "clean_selected": cs / ct if ct else math.nan,
        "noise_tokens": nt,
      }
    )
  return {"curve": curve, "ratio": ratio, "units": ablation.get("vocab", {}).get("units", "SmolLM2 tokens")}
