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


COMPARE = (
  ("clm_refined_pool", "clm_contaminated"),
  ("clm_random", "clm_refined_pool"),
  ("clm_askllm", "clm_random"),
  ("clm_perplexity", "clm_random"),
  ("clm_density", "clm_random"),
  ("clm_combination", "clm_random"),
  ("clm_askllm", "clm_refined_pool"),
  ("clm_perplexity", "clm_refined_pool"),
  ("clm_density", "clm_refined_pool"),
  ("clm_combination", "clm_refined_pool"),
  ("clm_askllm", "clm_perplexity"),
  ("slm_contaminated", "clm_contaminated"),
  ("slm_combination", "clm_combination"),
)


def ablation_table(ablation: dict[str, Any]) -> dict[str, Any]:
  """Per run: validation CE (final and best over the evals) mean and sd over seeds; paired comparisons."""
  runs = ablation["runs"]
  rows = []
  for name, r in runs.items():
    f, b = np.asarray(r["final_val_ce"]), np.asarray(r["best_val_ce"])
    rows.append(
      {
        "run": name,
        "loss": r["loss"],
        "data": r["data"],
        "what": r["what"],
        "docs": r["docs"],
        "tokens": r["tokens"],
        "epochs": r.get("epochs"),
        "seeds": len(f),
        "final_by_seed": f.tolist(),
        "final_mean": float(f.mean()),
        "final_sd": float(f.std(ddof=1)),
        "best_mean": float(b.mean()),
        "best_sd": float(b.std(ddof=1)),
      }
    )
  pairs = []
  for a, b in COMPARE:
    if a in runs and b in runs:
      for which in ("final_val_ce", "best_val_ce"):
        pairs.append(dict(det.paired_comparison(runs[a][which], runs[b][which]), a=a, b=b, metric=which))
  return {
    "rows": rows,
    "pairs": pairs,
    "unigram_val_ce": ablation.get("unigram_val_ce"),
    "vocab": ablation.get("vocab"),
    "budget": ablation.get("budget"),
    "settings": ablation.get("settings"),
    "reference": ablation.get("reference"),
  }


def regime_text(budget: dict[str, Any] | None, settings: dict[str, Any] | None) -> str:
  """One sentence: which regime the ablations ran in, the rule that fixed their positions, and why it matters."""
  if not budget or "regime" not in budget:
    return ""
  ep = budget.get("epochs", {})
  sel = [ep[k] for k in ("random", "askllm", "perplexity", "density", "combination") if k in ep]
  how = (
    f"{budget['positions']:,} positions per model, fixed by the rule {budget['rule']} ({budget['bound']} bound it) "
    "before any model trained"
    if budget.get("bound")
    else f"{budget['positions']:,} positions per model, set by {budget['rule']}"
  )
  seen = f"{ep.get('contaminated', 0):.2f} epochs of the whole pool" + (
    f", {min(sel):.2f}-{max(sel):.2f} of each selection" if sel else ""
  )
  if budget["regime"] == "data-abundant":
    why = (
      "the papers' regime: more text than compute, so a selection decides which text the steps are spent on "
      "rather than how many times the same text is repeated"
    )
  else:
    why = (
      "data are repeated, so more text tends to win whatever its quality: this does not test the papers' "
      "claim, which is about more data than compute"
    )
  return f"Regime: {budget['regime']}: {how}; that is {seen}. This is {why}."


def reference_text(reference: dict[str, Any] | None, unit: str = "unit") -> str:
  """One sentence on SLM's reference model and the perplexity baseline's: the trained reference (its text, the
  documents left out, its validation CE) or the pretrained one."""
  if not reference:
    return ""
  if reference.get("kind") != "trained":
    return (
      f"Reference model: {reference.get('model', 'SmolLM2-135M')} (pretrained, another tokenizer): its token "
      f"losses are spread evenly over the {unit}s each token covers."
    )
  t = reference.get("text", {})
  val = reference.get("final_val_ce") or [None]
  v = val[0] if isinstance(val, list) else val
  return (
    f"Reference model (Rho-1's recipe): the ablation models' own kind and vocabulary, trained for "
    f"{reference.get('steps')} steps ({reference.get('epochs', 0):.2f} epochs) on {t.get('docs')} clean documents "
    f"({t.get('source')}; {t.get('pool_overlap', 0)} pool and {t.get('validation_overlap', 0)} validation "
    f"documents left out); validation CE {'-' if v is None else f'{v:.3f}'} nats per {unit}. Its per-{unit} "
    "losses on each training row are SLM's reference losses, and its mean loss on each document is the "
    "perplexity baseline's score."
  )


def format_evidence(detection: dict[str, Any] | None, table: dict[str, Any] | None) -> str:
  """Plain-text detection figures and the ablation table (printed at the end of ``tokensift pipeline``)."""

  def f(x, d=3):
    return "-" if x is None else f"{x:.{d}f}"

  out = []
  if detection:
    c = detection["corpus"]
    out.append(
      f"known-answer corpus: {c['documents']} documents ({c['untouched_real']} untouched real; synthetic: "
      f"{c['junk']} junk, {c['near_duplicates']} near-duplicates in {c['clusters']} clusters, "
      f"{c['junk_lines']} junk lines in {c['docs_with_junk_lines']} documents, spans in "
      f"{c['docs_with_spans']})"
    )
    for key, name in (("prox_rules", "ProX rules"), ("prox_refiner", "ProX refiner")):
      if key in detection:
        d = detection[key]
        out.append(
          f"{name:13s} junk docs dropped P {f(d['docs']['precision'], 2)} R {f(d['docs']['recall'], 2)} "
          f"| junk lines removed P {f(d['lines']['precision'], 2)} R {f(d['lines']['recall'], 2)} "
          f"| non-junk docs dropped {100 * d['clean_dropped']:.0f}%"
        )
    rd = detection.get("real_dropped")
    if rd:
      out.append(
        "real (non-junk) documents dropped: "
        + ", ".join(f"{who} {100 * (v['share'] or 0):.0f}% ({v['dropped']} of {v['docs']})" for who, v in rd.items())
      )
    s = detection["selection"]
    who = s["askllm"].get("scorers") or {}
    by = (
      f"; ASK-LLM scores: {who['judge']} by the judge, {who['head']} by the distilled head" if who.get("head") else ""
    )
    out.append(
      f"selection on the refined pool ({s['docs']} docs, {s['junk_docs']} junk{by}): ROC AUC clean>junk "
      f"ASK-LLM {f(s['askllm']['auc_clean_over_junk'])}, perplexity-low "
      f"{f(s['perplexity_low']['auc_clean_over_junk'])}"
    )
    a = s["askllm"]
    if "auc_by_junk_kind" in a:
      out.append(
        "  ASK-LLM AUC per junk kind: "
        + ", ".join(f"{k} {f(v, 2)}" for k, v in a["auc_by_junk_kind"].items())
        + f"; P(yes)/(P(yes)+P(no)) AUC {f(a['auc_normalised'])}; next-token mass on yes+no: clean "
        f"{f(a['yes_no_mass_clean'])}, junk {f(a['yes_no_mass_junk'])}"
      )
    out.append("  junk kept at rate " + " ".join(f"{r:>5.0f}%" for r in RATES))
    for key in ("askllm", "perplexity_low", "perplexity_middle", "perplexity_high", "random"):
      out.append(f"  {key:17s}" + " ".join(f"{100 * (x['junk_kept'] or 0):5.0f}%" for x in s[key]["by_rate"]))
    d = detection["density"]
    out.append(
      f"DENSITY at {d['rate']:.0f}%: share of each near-duplicate cluster kept, IPS vs random: "
      + ", ".join(f"c{k} {100 * v['ips']:.0f}% vs {100 * v['random']:.0f}%" for k, v in d["clusters"].items())
      + f"; mean log density near-duplicates {f(d['mean_log_density_dup'], 2)} vs others "
      f"{f(d['mean_log_density_other'], 2)} (bandwidth {d.get('bandwidth_setting', '?')} = {f(d.get('bandwidth'))})"
    )
    if detection.get("slm"):
      out.append(
        f"Rho-1 SLM on the contaminated pool, selected share noise-span vs other "
        f"{detection['slm'].get('units', 'tokens')}: "
        + ", ".join(
          f"step {c['step']} {100 * c['noise_selected']:.0f}% vs {100 * c['clean_selected']:.0f}%"
          for c in detection["slm"]["curve"]
        )
      )
  if table:
    unit = table["vocab"].get("units", "SmolLM2 tokens")
    out.append(
      f"\nablations: validation CE in nats per unit ({unit}, compact vocab {table['vocab']['size']}; "
      f"unigram {f(table['unigram_val_ce'])}), mean ± sd over seeds"
    )
    b, st = table.get("budget"), table.get("settings")
    if b and st:
      layers = f"{st['num_layers']} layer{'s' if st['num_layers'] != 1 else ''}"
      untied = "" if st.get("tie_embeddings", True) else " (untied output)"
      out.append(
        f"  each model: {layers}, width {st['hidden_size']}{untied}, "
        f"{b.get('params_per_model', 0):,} parameters, {st['steps']} steps of {st['batch_size']} x "
        f"{st['seq_len']} units "
        f"({b['tokens_seen_per_model']:,} positions seen), lr {st['learning_rate']:g}; the first "
        f"{st['doc_tokens']} SmolLM2 tokens of each document; validation {b['val_tokens']:,} units of "
        f"{b['val_docs']} held-out documents"
      )
    for line in (regime_text(b, st), reference_text(table.get("reference"), unit.rstrip("s"))):
      if line:
        out.append("  " + line)
    for r in table["rows"]:
      ep = f" epochs {r['epochs']:4.2f}" if r.get("epochs") else ""
      out.append(
        f"  {r['run']:18s} docs {r['docs']:4d} units {r['tokens']:7,d}{ep}  final {r['final_mean']:.3f} ± "
        f"{r['final_sd']:.3f}  best {r['best_mean']:.3f} ± {r['best_sd']:.3f}  seeds "
        + " ".join(f"{x:.3f}" for x in r.get("final_by_seed", []))
      )
    for p in table["pairs"]:
      if p["metric"] == "final_val_ce":
        out.append(
          f"  {p['a']} - {p['b']}: {p['mean_diff']:+.3f} (sd {p['sd_diff']:.3f}, p {p['p']:.3f}, "
          f"{p['seeds_agreeing']}/{p['seeds']} seeds agree): "
          + ("beyond seed noise" if p["beyond_noise"] else "within seed noise")
        )
  return "\n".join(out)
