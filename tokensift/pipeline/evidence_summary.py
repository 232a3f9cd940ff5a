"""The ablation table (per run: validation CE over seeds; the paired comparisons), the sentences on the
ablations' regime and reference model, and the plain-text evidence ``tokensift pipeline`` prints at the end
(detection figures + the table), read from a run's ``detection.json`` / ``ablations.json``."""

from __future__ import annotations

from typing import Any

import numpy as np

from tokensift.pipeline import detection as det
from tokensift.pipeline.evidence import RATES


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
