"""The report's lead sections (DESIGN §12): what the known-answer corpus holds and one plot and one sentence per
method computed from the detection figures; then the seeded ablations (``ablation_sections``). Every sentence is
built from the numbers it sits next to."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from tokensift.core import jobs
from tokensift.pipeline.report import ablation_sections, plots
from tokensift.pipeline.report import text as rt
from tokensift.selection.keep import keep_count


def corpus_html(det: dict[str, Any], profile: str) -> str:
  c = det["corpus"]
  kinds = ", ".join(f"{rt.kind_name(k)} {v}" for k, v in sorted(c["junk_kinds"].items()))
  size, rest = divmod(c["near_duplicates"], c["clusters"]) if c["clusters"] else (0, 1)
  dups = f"{rt.count(c['near_duplicates'], 'near-duplicate document')} in {rt.count(c['clusters'], 'cluster')}" + (
    f" of {size} (each an unchanged real document and {rt.count(size - 1, 'edited copy', 'edited copies')} of it)"
    if not rest and size > 1
    else " (each a real document and edited copies of it)"
  )
  disjoint = c.get("clean") == c["untouched_real"] + c["docs_with_junk_lines"] + c["docs_with_spans"]
  return (
    f"<h2>The known-answer corpus</h2><p>Every method below is measured on one corpus of {c['documents']} "
    "documents whose answers are known: real documents from the input sample, and seeded synthetic "
    "corruptions labelled where they are. "
    f"<b>Real text</b> (unchanged): {rt.count(c['untouched_real'], 'document')} as they are, and every line and "
    "character of the documents that received junk lines or a noise span outside the inserted parts. "
    f"<b>Synthetic corruptions</b> ({html.escape(profile)} flavour): {rt.count(c['junk'], 'junk document')} "
    f"({kinds}); {dups}; "
    f"{rt.count(c['junk_lines'], 'junk line')} (menus, cookie banners, share bars, headers) inserted into "
    f"{rt.count(c['docs_with_junk_lines'], 'real document')}; one noise span (random strings, numeric "
    f"tables{', LaTeX noise' if profile == 'math' else ''}) inserted into each of "
    f"{c['docs_with_spans']}{' other' if disjoint else ''} real documents. Labels: "
    "<code>corpus/labels.jsonl</code>.</p>" + GLOSSARY
  )


GLOSSARY = (
  "<p><b>The methods.</b> <i>ProX</i>: a program per document that keeps or drops it and removes "
  "lines, written by hand-made rules or by a small trained refiner model. <i>ASK-LLM</i>: a language "
  "model asked whether the document is useful pre-training text; the score is its probability of "
  'answering "yes", P(yes). <i>Perplexity filtering</i> (the paper\'s baseline): keep the documents a '
  "reference language model finds least, most or middlingly surprising. <i>DENSITY</i>: a kernel "
  "density over document embeddings; <i>inverse-propensity</i> sampling keeps a document with "
  "probability falling with its density, so near-duplicates are thinned. <i>Rho-1 SLM</i> (selective "
  "language modelling): train only on the tokens whose loss most exceeds a reference model's. "
  "<i>CLM</i>: ordinary causal language modelling (a loss on every token). <i>ROC AUC</i>: the "
  "probability that a random clean document is ranked above a random junk one (0.5 is chance, 1 is "
  "perfect). <i>CE</i>: cross-entropy.</p>"
)


def prox_html(det: dict[str, Any], out: Path) -> str:
  who = [(k, n) for k, n in (("prox_rules", "rule programmer"), ("prox_refiner", "trained refiner")) if k in det]
  if not who:
    return ""
  plt = plots.plt()
  fig, ax = plt.subplots(figsize=(8, 3.8))
  labels = ["junk docs\nprecision", "junk docs\nrecall", "junk lines\nprecision", "junk lines\nrecall"]
  for j, (k, name) in enumerate(who):
    d = det[k]
    vals = [d["docs"]["precision"], d["docs"]["recall"], d["lines"]["precision"], d["lines"]["recall"]]
    bars = ax.bar(np.arange(4) + 0.38 * j, [v or 0 for v in vals], 0.38, label=name, color=("C0", "C1")[j])
    for b, v in zip(bars, vals):
      ax.annotate(rt.num(v), (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=9)
  ax.set_xticks(np.arange(4) + 0.19 * (len(who) - 1), labels)
  ax.set_ylim(0, 1.12)
  ax.set_ylabel("precision / recall (1 = perfect)")
  ax.set_title("ProX against the labels")
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
  img = plots.save(fig, out / "ev_prox.png")
  sents = []
  for k, name in who:
    d = det[k]
    sents.append(
      f"the {name} dropped {d['docs']['tp']} of "
      f"{rt.count(d['docs']['tp'] + d['docs']['fn'], 'junk document')} "
      f"(and {rt.count(d['docs']['fp'], 'other document')}, {rt.pct(d['clean_dropped'])} of the non-junk "
      "ones) "
      f"and removed {d['lines']['tp']} of the "
      f"{rt.count(d['lines']['tp'] + d['lines']['fn'], 'inserted junk line')}"
      f" and {rt.count(d['lines']['fp'], 'other line')} (line precision {rt.num(d['lines']['precision'])})"
    )
  kinds = det[who[0][0]]["dropped_by_junk_kind"]
  size = det.get("corpus", {}).get("junk_kinds", {})

  def dropped(k, v):
    return f"{round(v * size[k])} of {size[k]} dropped" if k in size else f"{rt.pct(v)} dropped"

  missed = "".join(
    f" Junk kinds not always dropped by the {name}: "
    + ", ".join(
      f"{rt.kind_name(k)} ({dropped(k, v)})"
      for k, v in sorted(det[w]["dropped_by_junk_kind"].items())
      if v is not None and v < 1.0
    )
    + "."
    for w, name in who
    if any(v is not None and v < 1.0 for v in det[w]["dropped_by_junk_kind"].values())
  )
  rows = "".join(
    f"<tr><td>{html.escape(rt.kind_name(k))}</td>"
    + (f"<td>{size[k]}</td>" if size else "")
    + "".join(f"<td>{rt.pct(det[w]['dropped_by_junk_kind'].get(k))}</td>" for w, _ in who)
    + "</tr>"
    for k in sorted(kinds)
  )
  table = (
    "<table><tr><th>junk kind</th>"
    + ("<th>documents</th>" if size else "")
    + "".join(f"<th>dropped by the {n}</th>" for _, n in who)
    + "</tr>"
    + rows
    + "</table>"
  )
  return (
    f"<h2>ProX: refiner vs rules on the same documents</h2>{rt.img(img)}<p>On the same corpus, "
    + "; ".join(sents)
    + ". Lines of a dropped real document count as removed. "
    + real_dropped_sentence(det.get("real_dropped"))
    + missed
    + f"</p>{table}"
  )


def real_dropped_sentence(rd: dict[str, Any] | None) -> str:
  """The refiner's share of real (non-junk) documents dropped next to the rules' (``evidence.real_dropped``)."""
  if not rd:
    return ""
  names = {"refiner": "the refine stage's programmer", "rules": "the rule programmer"}
  parts = [
    f"{names[w]}{' (' + html.escape(v['programmer']) + ')' if w == 'refiner' else ''} dropped "
    f"{rt.pct(v['share'])} ({v['dropped']} of {v['docs']})"
    for w, v in rd.items()
  ]
  return "Real documents (every pool document but the synthetic junk) dropped: " + "; ".join(parts) + "."


SELECTORS = (
  ("askllm", "ASK-LLM (top score)", "C3", "-", "o"),
  ("perplexity_low", "perplexity: lowest", "C0", "--", "s"),
  ("perplexity_middle", "perplexity: middle", "C2", ":", "^"),
  ("perplexity_high", "perplexity: highest", "C1", "-.", "D"),
  ("random", "random", "grey", "-", "x"),
)
MODE_NAME = {"low": "lowest-perplexity", "middle": "middle-perplexity", "high": "highest-perplexity"}


def selection_html(det: dict[str, Any], out: Path) -> str:
  sel = det["selection"]
  plt = plots.plt()
  fig, ax = plt.subplots(figsize=(8, 4))
  for j, (key, name, col, ls, mk) in enumerate(SELECTORS):
    r = sel[key]["by_rate"]
    dx = 0.8 * (j - (len(SELECTORS) - 1) / 2)  # equal values at one rate are drawn side by side, not on top
    ax.plot(
      [x["rate"] + dx for x in r],
      [100 * (x["junk_kept"] or 0) for x in r],
      ls,
      color=col,
      marker=mk,
      ms=7,
      lw=2,
      label=name,
    )
  ax.set_xticks([x["rate"] for x in sel["random"]["by_rate"]])
  ax.set_xlabel("documents kept (% of the refined pool; markers at one rate set slightly apart)")
  ax.set_ylabel("junk documents kept (% of the junk)")
  ax.set_ylim(-4, 104)
  ax.set_title(f"Junk kept by each selector ({sel['junk_docs']} junk of {sel['docs']} scored documents)")
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: the curves cross everywhere
  img = plots.save(fig, out / "ev_selection.png")
  a = sel["askllm"]
  at = {k: next(x for x in sel[k]["by_rate"] if x["rate"] == 40.0) for k, *_ in SELECTORS}
  who = a.get("scorers") or {}
  by = (
    f" (ASK-LLM scores here come from the judge and the distilled head: {who['judge']} by the judge, "
    f"{who['head']} by the head; the yes/no readouts below are the judge's alone)"
    if who.get("head")
    else ""
  )
  sent = (
    f"{rt.count(sel['junk_docs'], 'junk document')} survived refinement and were scored with the "
    f"{sel['docs'] - sel['junk_docs']} other documents{by}. ASK-LLM ranks a clean document above a junk one with "
    f"probability {rt.num(a['auc_clean_over_junk'])} (its ROC AUC{_chance(a['auc_clean_over_junk'])}; "
    f"lowest-perplexity filtering's is {rt.num(sel['perplexity_low']['auc_clean_over_junk'])}). Keeping 40% of "
    f"the pool, ASK-LLM keeps {rt.pct(at['askllm']['junk_kept'])} of the junk, lowest-perplexity filtering "
    f"{rt.pct(at['perplexity_low']['junk_kept'])}, middle {rt.pct(at['perplexity_middle']['junk_kept'])}, "
    "highest "
    f"{rt.pct(at['perplexity_high']['junk_kept'])} and random {rt.pct(at['random']['junk_kept'])}."
  )
  low = min(at[k]["junk_kept"] or 0 for k, *_ in SELECTORS)
  best = [n for k, n, *_ in SELECTORS if (at[k]["junk_kept"] or 0) == low]
  sent += f" At that rate the least junk is kept by {' and '.join(best)}{' (tied)' if len(best) > 1 else ''}."
  paras = "".join(f"<p>{x.strip()}</p>" for x in (sent, _perplexity_why(sel), _askllm_why(a)) if x)
  title = "<h2>ASK-LLM vs the paper's baselines (perplexity filtering, random)</h2>"
  return f"{title}{rt.img(img)}{paras}" + _examples(sel)


def _perplexity_why(sel: dict[str, Any]) -> str:
  """Why a perplexity filter's junk-kept curve is flat or falls as the rate grows, from where each junk kind
  sits in the pool's perplexity order (``sel['perplexity_by_kind']``, ``evidence.perplexity_by_junk_kind``)."""
  kinds = sel.get("perplexity_by_kind")
  if not kinds:
    return ""
  odd = []
  for mode in ("low", "middle", "high"):
    v = [x["junk_kept"] for x in sel[f"perplexity_{mode}"]["by_rate"]]
    if None in v or len(v) < 2:
      continue
    if max(v) - min(v) < 1e-9 or any(b < a - 1e-9 for a, b in zip(v, v[1:])):
      odd.append((mode, v))
  if not odd:
    return ""
  rates = [x["rate"] for x in sel["perplexity_low"]["by_rate"]]
  span = f" from {rates[0]:g}% to {rates[-1]:g}%"

  def named(ks):
    return rt.join_words([f"{rt.kind_name(k)} ({rt.count(kinds[k]['n'], 'document')})" for k in ks])

  sides: dict[str, list[str]] = {"lowest": [], "highest": [], "spread": []}
  for k in sorted(kinds, key=lambda k: (kinds[k]["lowest"], k)):
    d = kinds[k]
    sides["lowest" if d["lowest"] <= 50 else "highest" if d["highest"] <= 50 else "spread"].append(k)
  said = []
  for side, ks in sides.items():
    if not ks:
      continue
    one = sum(kinds[k]["n"] for k in ks) == 1
    said.append(
      f"{named(ks)} "
      + (
        f"{'sits' if one else 'sit'} within the {side}-perplexity {max(kinds[k][side] for k in ks):.0f}% of the pool"
        if side != "spread"
        else f"{'is' if one else 'are'} spread across the order"
      )
    )
  out = " Ranked by the reference model's perplexity, " + "; ".join(said) + "."
  said_of: dict[tuple, list[str]] = {}  # what is said of a curve -> the filters it is said of (merged when equal)
  for mode, v in odd:
    always = [rt.kind_name(k) for k in kinds if min(kinds[k]["kept"][mode]) == 1.0]
    never = [rt.kind_name(k) for k in kinds if max(kinds[k]["kept"][mode]) == 0.0]
    some = [k for k in kinds if rt.kind_name(k) not in always + never]
    parts = ([f"all of the {rt.join_words(always)}"] if always and never + some else []) + (
      [f"none of the {rt.join_words(never)}"] if never and always + some else []
    )
    for k in some:
      lo, hi = min(kinds[k]["kept"][mode]), max(kinds[k]["kept"][mode])
      parts.append(f"{rt.pct(lo)}{'' if hi == lo else '–' + rt.pct(hi)} of the {rt.kind_name(k)}")
    said_of.setdefault((tuple(v), tuple(parts)), []).append(mode)
  clauses = []
  for (v, parts), modes in said_of.items():
    one = len(modes) == 1
    name = rt.join_words([MODE_NAME[m].split("-")[0] + "-" for m in modes[:-1]] + [MODE_NAME[modes[-1]]]) + " filtering"
    at = span if not clauses else ""  # the rates said once
    if max(v) - min(v) < 1e-9:
      what = (
        "none of the junk at any rate"
        if v[0] == 0
        else "all of the junk at every rate"
        if v[0] == 1
        else f"the same {rt.pct(v[0])} of the junk at every rate"
      )
      head = f"{name} {'keeps' if one else 'keep'} {what}{at}"
    else:
      head = (
        f"{name}'s junk share falls as the rate grows ("
        + ", ".join(f"{rt.pct(x)} at {r:g}%" for r, x in zip(rates, v))
        + ")"
      )
    clauses.append(head + (f" ({', '.join(parts)})" if parts else ""))
  return out + " So " + "; ".join(clauses) + "."


def _askllm_why(a: dict[str, Any]) -> str:
  """What the scorer's per-kind figures say (computed from ``evidence.askllm_diagnostics``)."""
  kinds = a.get("auc_by_junk_kind")
  if not kinds:
    return ""
  caught = [k for k, v in kinds.items() if v is not None and v > 0.55]
  preferred = [k for k, v in kinds.items() if v is not None and v < 0.45]
  out = (
    " Per junk kind (AUC of that kind alone against the clean documents): "
    + ", ".join(f"{k.replace('_', ' ')} {rt.num(v)}" for k, v in kinds.items())
    + "."
  )
  if preferred:
    out += f" It rates {rt.join_words([rt.kind_name(k) for k in preferred])} above clean text"
    out += f"; it ranks {rt.join_words([rt.kind_name(k) for k in caught])} below." if caught else "."
  out += (
    f" Mean P(yes) is {rt.num(a['p_yes_clean'], 3)} on clean and {rt.num(a['p_yes_junk'], 3)} on junk "
    "documents, and "
    f'"yes" + "no" together take only {rt.pct(a["yes_no_mass_clean"])} (clean) and '
    f"{rt.pct(a['yes_no_mass_junk'])} (junk) of the next-token probability"
    + (
      ": this scorer mostly does not answer the question."
      if max(a["yes_no_mass_clean"] or 0, a["yes_no_mass_junk"] or 0) < 0.5
      else "."
    )
    + f" The yes/no-normalised score P(yes)/(P(yes)+P(no)) has AUC "
    f"{rt.num(a['auc_normalised'])}{_chance(a['auc_normalised'])}."
  )
  return out


def _chance(auc: float | None) -> str:
  if auc is None:
    return ""
  return (
    ": better than chance"
    if auc > 0.55
    else (": worse than chance, this scorer prefers the junk" if auc < 0.45 else ": about chance")
  )


def _examples(sel: dict[str, Any]) -> str:
  ex = sel.get("examples", {})
  parts = []
  for key, name, unit, sign, top in (
    ("askllm", "ASK-LLM", "P(yes)", 1, "highest P(yes)"),
    ("perplexity", "reference-model perplexity", "log perplexity (nats per token)", -1, "lowest perplexity"),
  ):
    if key not in ex:
      continue
    rows = "".join(
      f"<tr><td>{side}</td><td>{html.escape(r['id'])}</td><td>{sign * r['value']:.4g}</td>"
      f"<td style='white-space:nowrap'>{html.escape(r['label'])}</td>"
      f"<td style='text-align:left'>{html.escape(r.get('snippet', ''))}</td></tr>"
      for side in ("top", "bottom")
      for r in ex[key][side]
    )
    parts.append(
      f"<h3>Top and bottom five by {name} (top = {top}; label = what the corpus made the document)</h3>"
      f"<table><tr><th>rank</th><th>id</th><th>{unit}</th><th>label</th><th style='text-align:left'>text "
      f"(start)</th></tr>{rows}</table>"
    )
  return "".join(parts)


def scatter_html(
  ids: list[str],
  score: np.ndarray,
  dens: np.ndarray,
  selected: np.ndarray,
  threshold: float | None,
  labels: dict[str, dict],
  out: Path,
) -> str:
  plt = plots.plt()
  fig, ax = plt.subplots(figsize=(8, 4.5))
  kinds = np.asarray([labels.get(i, {}).get("kind", "clean") for i in ids])
  for k, col, mk, name in (
    ("clean", "C2", "o", "real"),
    ("dup", "C1", "s", "near-duplicate"),
    ("junk", "C3", "^", "junk"),
  ):
    m = kinds == k
    ax.scatter(
      score[m & ~selected],
      dens[m & ~selected],
      s=30,
      marker=mk,
      facecolors="none",
      edgecolors=col,
      label=f"{name}, not selected",
    )
    ax.scatter(score[m & selected], dens[m & selected], s=30, marker=mk, color=col, label=f"{name}, selected")
  if threshold is not None:
    ax.axvline(threshold, color="k", ls="--", lw=1, label="ASK-LLM cut")
  ax.set_xlabel("ASK-LLM P(yes)")
  ax.set_ylabel("DENSITY log kernel sum\n(higher = more similar documents)")
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
  img = plots.save(fig, out / "ev_scatter.png")
  counts = ", ".join(
    f"{int((selected & (kinds == k)).sum())} of {int((kinds == k).sum())} {name}"
    for k, name in (("clean", "real"), ("dup", "near-duplicate"), ("junk", "junk"))
    if (kinds == k).any()
  )
  sent = (
    f"The select stage (the ASK-LLM cut, then DENSITY inverse propensity) kept {int(selected.sum())} of "
    f"{len(ids)} scored documents: {counts} documents."
  )
  jk = np.asarray([labels.get(i, {}).get("junk_kind") or "" for i in ids])
  by = sorted(
    ((int((selected & (jk == k)).sum()), int((jk == k).sum()), k) for k in set(jk[kinds == "junk"])),
    key=lambda x: (-x[0] / x[1], x[2]),
  )
  if by:
    sent += " Junk kept per kind: " + ", ".join(f"{rt.kind_name(k)} {a} of {b}" for a, b, k in by) + "."
  return f"<h3>Score vs density (filled = selected; dashed line = the ASK-LLM cut)</h3>{rt.img(img)}<p>{sent}</p>"


def density_html(det: dict[str, Any], out: Path) -> str:
  d = det["density"]
  cl = d["clusters"]
  if not cl:
    return ""
  plt = plots.plt()
  fig, ax = plt.subplots(figsize=(8, 3.6))
  x = np.arange(len(cl))
  names = sorted(cl, key=int)
  ax.bar(x - 0.2, [100 * cl[c]["ips"] for c in names], 0.4, label="DENSITY inverse propensity")
  ax.bar(x + 0.2, [100 * cl[c]["random"] for c in names], 0.4, color="grey", label="random")
  ax.set_xticks(x, [f"cluster {c}\n({cl[c]['size']} in the pool)" for c in names])
  ax.axhline(d["rate"], color="k", ls=":", lw=1, label=f"the sampling rate ({d['rate']:.0f}%)")
  ax.set_ylim(0, 100)
  ax.set_ylabel("% of the cluster's\ndocuments kept")
  ax.set_title(f"Near-duplicate clusters kept at a {d['rate']:.0f}% rate")
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
  img = plots.save(fig, out / "ev_density.png")
  from tokensift.pipeline.evidence import IPS_DRAWS

  ips, rnd = float(np.mean([cl[c]["ips"] for c in names])), float(np.mean([cl[c]["random"] for c in names]))
  verdict = (
    "fewer near-duplicates, as intended"
    if ips < rnd - 0.05
    else "no clear difference"
    if ips <= rnd + 0.05
    else "more near-duplicates"
  )
  sent = (
    f"Keeping {d['rate']:.0f}% of the pool, inverse-propensity sampling keeps on average {rt.pct(ips)} of each "
    f"near-duplicate cluster against {rt.pct(rnd)} for random sampling (mean of {IPS_DRAWS} seeded draws: "
    f"{verdict}); the select stage's own list kept "
    + ", ".join(f"{rt.pct(cl[c]['select_stage'])} of cluster {c}" for c in names)
    + f". Mean log density: near-duplicates {rt.num(d['mean_log_density_dup'])}, other documents "
    f"{rt.num(d['mean_log_density_other'])}"
    + (
      f" ({html.escape(str(d.get('kernel')))} kernel, bandwidth {rt.num(d['bandwidth'], 3)} from the "
      f"{html.escape(str(d['bandwidth_setting']))} rule)"
      if d.get("bandwidth") is not None
      else ""
    )
    + "."
  )
  gone = sorted(set(range(det.get("corpus", {}).get("clusters", 0))) - {int(c) for c in cl})
  if gone:
    sent += (
      f" {'Cluster' if len(gone) == 1 else 'Clusters'} {rt.join_words([str(c) for c in gone])} "
      f"{'is' if len(gone) == 1 else 'are'} not in the pool: refinement dropped every document of "
      f"{'it' if len(gone) == 1 else 'them'}, so DENSITY never saw {'it' if len(gone) == 1 else 'them'}."
    )
  return f"<h2>DENSITY: near-duplicate clusters</h2>{rt.img(img)}<p>{sent}</p>"


def slm_html(det: dict[str, Any], out: Path) -> str:
  s = det.get("slm")
  if not s:
    return ""
  u = "characters" if s.get("units") == "characters" else "tokens"  # what the ablation models predict
  plt = plots.plt()
  fig, ax = plt.subplots(figsize=(8, 3.6))
  steps = [c["step"] for c in s["curve"]]
  ax.plot(steps, [100 * c["noise_selected"] for c in s["curve"]], "o-", color="C3", label=f"noise-span {u}")
  ax.plot(steps, [100 * c["clean_selected"] for c in s["curve"]], "o-", color="C2", label=f"other {u}")
  ax.axhline(100 * s["ratio"], color="grey", ls=":", label=f"SLM ratio {s['ratio']:.0%}")
  ax.set_xlabel("training step (end of each window)")
  ax.set_ylabel(f"% of {u} selected")
  ax.set_ylim(0, 100)
  ax.set_title("Rho-1 SLM on the contaminated pool")
  ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
  img = plots.save(fig, out / "ev_slm.png")
  first, last = s["curve"][0], s["curve"][-1]
  prev = s["curve"][-2]["step"] if len(s["curve"]) > 1 else 0
  sent = (
    f"The SLM loss trains on the {s['ratio']:.0%} of {u} in each batch with the largest excess loss over "
    f"the reference model. It selected {rt.pct(first['noise_selected'])} of the noise-span {u} in the first "
    f"{first['step']} steps and {rt.pct(last['noise_selected'])} in the last window "
    f"(steps {prev + 1}–{last['step']}), "
    f"against {rt.pct(first['clean_selected'])} → {rt.pct(last['clean_selected'])} of the other {u}: noise "
    + (
      f"{u} are selected less than the rest (their excess loss over the reference model is lower)"
      if last["noise_selected"] < last["clean_selected"] - 0.05
      else f"{u} are selected more than the rest"
      if last["noise_selected"] > last["clean_selected"] + 0.05
      else f"{u} are selected about as often as the rest"
    )
    + "."
  )
  return f"<h2>Rho-1 SLM: noise-span {u} selected over training</h2>{rt.img(img)}<p>{sent}</p>"


def sections(ctx, out: Path) -> list[str]:
  """The evidence sections for ``report.write_report`` (empty when the run has no detection stage)."""
  det_path = ctx.dir("detection") / "detection.json"
  abl_path = ctx.dir("ablations") / "ablations.json"
  body: list[str] = []
  det = json.loads(det_path.read_text()) if det_path.exists() else None
  if det:
    texts = {r["id"]: r["text"] for r in jobs.read_records(ctx.dir("corpus") / "corpus.jsonl")}
    for ex in det["selection"].get("examples", {}).values():
      for side in ex.values():
        for r in side:
          r["snippet"] = " ".join(texts.get(r["id"], "").split())[:160]
    from tokensift.pipeline import evidence

    labels = {r["id"]: r for r in jobs.read_records(ctx.dir("corpus") / "labels.jsonl")}
    pool, log_ppl = evidence.scored_pool_perplexity(ctx)  # the pool and order the perplexity filters ranked
    det["selection"]["perplexity_by_kind"] = evidence.perplexity_by_junk_kind(
      log_ppl,
      [labels[i]["junk_kind"] if labels[i]["kind"] == "junk" else None for i in pool],
      [x["rate"] for x in det["selection"]["perplexity_low"]["by_rate"]],
    )
    body += [corpus_html(det, ctx.config.corpus.profile), prox_html(det, out), selection_html(det, out)]
    body.append(_scatter(ctx, out))
    body += [density_html(det, out), slm_html(det, out)]
  if abl_path.exists():
    from tokensift.pipeline import evidence_summary

    abl = json.loads(abl_path.read_text())
    body.append(ablation_sections.ablation_html(abl, evidence_summary.ablation_table(abl), out))
  return body


def _scatter(ctx, out: Path) -> str:
  from tokensift.pipeline import evidence
  from tokensift.pipeline.corpus_stages import selected_ids

  sc, dens = evidence.scores(ctx), evidence.log_density(ctx)
  ids = [i for i in sc if i in dens]
  labels = {r["id"]: r for r in jobs.read_records(ctx.dir("corpus") / "labels.jsonl")}
  chosen = set(selected_ids(ctx))
  s = np.asarray([sc[i] for i in ids])
  frac = ctx.config.selection.askllm_fraction
  thr = float(np.sort(s)[::-1][max(0, keep_count(len(s), frac) - 1)]) if frac else None
  return scatter_html(
    ids, s, np.asarray([dens[i] for i in ids]), np.asarray([i in chosen for i in ids]), thr, labels, out
  )
