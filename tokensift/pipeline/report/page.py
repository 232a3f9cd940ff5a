"""The pipeline report: one static HTML page with PNG plots (matplotlib, Agg backend), no server needed.

Sections: stage timings; documents and tokens kept per stage; the refiner (SFT loss, F1 against the rule
programmer and the ceiling, the refiner's and the rules' shares of real documents dropped); ASK-LLM score and
DENSITY histograms and density vs score (selected documents marked; judge + distilled head scores with a
``distill`` stage) and the distilled head's fidelity (``distill_section``); refined documents with removed lines
struck through; the Rho-1 token-selection view; training and validation curves (SLM vs CLM vs the whole refined
pool) and the validation-loss table.

Everything is read from the run directory (stage markers and job outputs), so the page can be rebuilt from a
finished run with ``write_report(ctx, out_dir)``.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tokensift.core import jobs
from tokensift.pipeline.report import plots
from tokensift.pipeline.config import as_json
from tokensift.pipeline.stages import MARKER


def _markers(run_dir: Path, names: Sequence[str]) -> list[dict[str, Any]]:
  out = []
  for n in names:
    p = run_dir / n / MARKER
    if p.exists():
      out.append(json.loads(p.read_text()))
  return out


def _num(v: Any, digits: int = 1) -> str:
  if v is None:
    return "–"
  if isinstance(v, float):
    return f"{v:,.{digits}f}"
  return f"{v:,}" if isinstance(v, int) else html.escape(str(v))


def _table(head: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 1) -> str:
  th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
  body = "".join("<tr>" + "".join(f"<td>{_num(c, digits)}</td>" for c in r) + "</tr>" for r in rows)
  return f"<table><tr>{th}</tr>{body}</table>"


# ------------------------------------------------------------------------------------------------- plots


def plot_funnel(summaries: dict[str, dict[str, Any]], path: Path) -> str | None:
  """Documents and tokens after each stage (bars), from the stage summaries."""
  steps = []
  if "refine" in summaries:
    s = summaries["refine"]
    steps.append(("pool", s.get("docs_in"), s.get("tokens_in")))
  if "refine_rules" in summaries:
    s = summaries["refine_rules"]
    steps.append(("refined\n(rules)", s.get("docs_out"), s.get("tokens_out")))
  scored = ("distill", "scored\n(judge + head)") if "distill" in summaries else ("score", "scored")
  for name, label in (("refine", "refined"), scored, ("select", "selected")):
    if name in summaries:
      s = summaries[name]
      steps.append((label, s.get("docs_out"), s.get("tokens_out")))
  if "reference_losses" in summaries:
    t = summaries["reference_losses"]["train"]
    steps.append(("training set\n(cut to seq len)", t.get("records"), t.get("tokens")))
  if not steps:
    return None
  plt = plots.plt()
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
  labels = [s[0] for s in steps]
  for ax, k, title in ((axes[0], 1, "documents"), (axes[1], 2, "tokens (SmolLM2 tokenizer)")):
    vals = [s[k] or 0 for s in steps]
    bars = ax.bar(range(len(vals)), vals, color=["#888"] + ["#4a7ebb"] * (len(vals) - 1))
    ax.set_xticks(range(len(vals)), labels)
    ax.set_title(f"{title} kept per stage")
    ax.set_ylabel(title.split(" (")[0])
    ax.set_ylim(0, 1.1 * max(vals + [1]))  # room for the counts above the bars
    for b, v in zip(bars, vals):
      ax.annotate(f"{v:,}", (b.get_x() + b.get_width() / 2, b.get_height()), ha="center", va="bottom", fontsize=9)
  return plots.save(fig, path)


def plot_hist(values: np.ndarray, title: str, xlabel: str, path: Path, selected: np.ndarray | None = None) -> str:
  plt = plots.plt()
  fig, ax = plt.subplots(figsize=(5.2, 3.6))
  bins = np.histogram_bin_edges(values, bins=30).tolist()
  ax.hist(values, bins=bins, color="#999", label="all")
  if selected is not None and selected.any():
    ax.hist(values[selected], bins=bins, color="#d9534f", alpha=0.8, label="selected")
    ax.legend(loc="best")
  ax.set_title(title)
  ax.set_xlabel(xlabel)
  ax.set_ylabel("documents")
  return plots.save(fig, path)


def plot_scatter(score: np.ndarray, dens: np.ndarray, selected: np.ndarray, path: Path) -> str:
  plt = plots.plt()
  fig, ax = plt.subplots(figsize=(5.2, 3.6))
  ax.scatter(dens[~selected], score[~selected], s=14, c="#999", label="not selected")
  ax.scatter(dens[selected], score[selected], s=16, c="#d9534f", label="selected")
  ax.set_xlabel("log density (DENSITY kernel sum)")
  ax.set_ylabel("ASK-LLM P(yes)")
  ax.set_title("density vs ASK-LLM score")
  ax.legend(loc="best")
  return plots.save(fig, path)


def plot_curves(runs: dict[str, tuple[list[dict], list[dict]]], path: Path) -> str | None:
  """Training (cross-entropy on every token) and validation curves, one line per run."""
  if not runs:
    return None
  plt = plots.plt()
  fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
  colours = {"slm_selected": "#d9534f", "clm_selected": "#4a7ebb", "clm_refined_pool": "#5cb85c"}
  for run, (train, evals) in runs.items():
    c = colours.get(run)
    if train:
      axes[0].plot([r["step"] for r in train], [r["ce_unmasked"] for r in train], label=run, color=c)
    if evals:
      axes[1].plot([r["step"] for r in evals], [r["ce_unmasked"] for r in evals], marker="o", label=run, color=c)
  axes[0].set_title("training cross-entropy (all tokens of the batch)")
  axes[1].set_title("validation cross-entropy (held-out documents)")
  for ax in axes:
    ax.set_xlabel("step")
    ax.set_ylabel("nats / token")
    ax.legend(loc="best")
  return plots.save(fig, path)


def plot_refiner_loss(records: list[dict], path: Path) -> str | None:
  if not records:
    return None
  plt = plots.plt()
  fig, ax = plt.subplots(figsize=(5.2, 3.2))
  ax.plot([r["step"] for r in records], [r["loss"] for r in records], color="#4a7ebb")
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("CE on program tokens\n(nats per token)")
  ax.set_title("refiner SFT")
  return plots.save(fig, path)


# ------------------------------------------------------------------------------------------------- pieces


def struck_document(record: dict[str, Any], max_lines: int = 40) -> str:
  """The raw document with the lines its programs removed struck through (all of it when dropped)."""
  from tokensift.refine import executor as ex

  raw = record.get("raw_text") or ""
  lines = raw.split("\n")
  if record["kept"]:
    removed = (
      {i for a, b in ex.execute_chunk(record.get("chunk_program") or None, raw).removed for i in range(a, b + 1)}
      if record.get("chunk_program")
      else set()
    )
  else:
    removed = set(range(len(lines)))
  out = []
  for i, line in enumerate(lines[:max_lines]):
    text = html.escape(line) or "&nbsp;"
    out.append(
      f'<div class="ln"><span class="no">{i:03d}</span>' + (f"<del>{text}</del>" if i in removed else text) + "</div>"
    )
  if len(lines) > max_lines:
    out.append(f'<div class="ln more">… {_lines(len(lines) - max_lines).replace(" ", " more ")}</div>')
  return "".join(out)


def pick_examples(records: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
  """Documents with removed lines first, then dropped ones (drop reasons varied), in input order."""
  edited = [r for r in records if r["kept"] and r["stats"].get("lines_removed", 0) > 0]
  dropped, seen = [], set()
  for r in records:
    reason = r["stats"].get("drop_reason")
    if not r["kept"] and reason not in seen and len(r.get("raw_text") or "") < 3000:
      dropped.append(r)
      seen.add(reason)
  half = max(1, n // 2)
  chosen = edited[: n - min(half, len(dropped))]
  return chosen + dropped[: n - len(chosen)]


def _lines(k: int) -> str:
  return f"{k} line" if k == 1 else f"{k} lines"


def _examples_html(records: list[dict[str, Any]], n: int, title: str) -> str:
  parts = [f"<h3>{html.escape(title)}</h3>"]
  picks = pick_examples(records, n)
  if not picks:
    parts.append("<p>No document had lines removed or was dropped.</p>")
  for r in picks:
    state = "kept" if r["kept"] else f"dropped ({r['stats'].get('drop_reason')})"
    prog = "\n".join(p for p in (r.get("doc_program"), r.get("chunk_program")) if p)
    parts.append(
      f'<div class="ex"><p><b>{html.escape(str(r["id"]))}</b> — {state}; '
      f"{_lines(r['stats'].get('lines_removed', 0))} removed</p>"
      f'<pre class="prog">{html.escape(prog[:600])}</pre><div class="doc">{struck_document(r)}</div></div>'
    )
  return "".join(parts)


def _records(run_dir: Path, stage: str, job: str) -> list[dict[str, Any]]:
  files = jobs.shard_files(run_dir / stage, job)
  return [r for f in files for r in jobs.read_records(f)]


# ------------------------------------------------------------------------------------------------- page

CSS = """body{font-family:sans-serif;max-width:70em;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.ex{border:1px solid #ddd;margin:1em 0;padding:.5em}.doc{font-family:monospace;font-size:12px}
.ln .no{color:#aaa;margin-right:.8em}del{color:#c33;background:#fdecea}.prog{background:#f7f7f7;font-size:12px}
img{max-width:100%}iframe{width:100%;height:28em;border:1px solid #ccc}"""


def write_report(ctx, out_dir: str | Path) -> Path:
  """Writes ``index.html`` and its PNGs into ``out_dir``; returns the HTML path."""
  out = Path(out_dir)
  out.mkdir(parents=True, exist_ok=True)
  run_dir = Path(ctx.run_dir)
  names = [n for n in ctx.summaries]
  sums = ctx.summaries
  body = [f"<h1>tokensift pipeline report</h1><p>run directory <code>{html.escape(str(run_dir))}</code></p>"]
  from tokensift.pipeline.report import evidence_sections

  body += evidence_sections.sections(ctx, out)  # what each method did, against known answers (DESIGN §12)

  marks = _markers(run_dir, names)
  rows = [
    (
      m["stage"],
      m["seconds"],
      m["cpu_seconds"],
      m["summary"].get("docs_in"),
      m["summary"].get("docs_out"),
      m["summary"].get("tokens_in"),
      m["summary"].get("tokens_out"),
    )
    for m in marks
  ]
  rows.append(
    (
      "total (before this report)",
      sum(m["seconds"] for m in marks),
      sum(m["cpu_seconds"] for m in marks),
      None,
      None,
      None,
      None,
    )
  )
  body.append(
    "<h2>Stage timings</h2><p>Wall-clock and process CPU seconds of the run that did each stage's work "
    "(documents and tokens in/out; tokens counted with the SmolLM2 tokenizer).</p>"
  )
  body.append(_table(("stage", "wall s", "cpu s", "docs in", "docs out", "tokens in", "tokens out"), rows))

  img = plot_funnel(sums, out / "funnel.png")
  if img:
    body.append(f'<h2>Documents and tokens kept per stage</h2><img src="{img}">')

  if "refiner_eval" in sums:
    ev = sums["refiner_eval"]
    body.append("<h2>ProX refining model</h2>")
    curve = plot_refiner_loss(
      jobs.read_records(run_dir / "refiner_train" / "train" / "metrics.jsonl", missing_ok=True), out / "refiner_sft.png"
    )
    tr = sums.get("refiner_train", {})
    body.append(
      f"<p>SFT of a {tr.get('params', 0):,}-parameter Llama-family decoder on {tr.get('doc_pairs')} "
      f"doc-level and {tr.get('chunk_pairs')} chunk-level pairs written by the rule programmer "
      f"({tr.get('documents')} training documents); F1 against the rules on {ev['docs_in']} held-out "
      "documents (the ceiling is the rule programmer scored against a second run of itself).</p>"
    )
    if curve:
      body.append(f'<img src="{curve}">')
    from tokensift.pipeline import evidence
    from tokensift.pipeline.report.evidence_sections import real_dropped_sentence

    labels = {r["id"]: r for r in jobs.read_records(run_dir / "corpus" / "labels.jsonl", missing_ok=True)}
    said = real_dropped_sentence(evidence.real_dropped(ctx, labels or None))
    if said:
      body.append(f"<p>{said}</p>")
    frows = []
    for who in ("refiner", "ceiling"):
      r = ev[who]
      for key, label in (
        ("doc", "doc keep/drop (drop = positive)"),
        ("lines_chunk_stage", "removed lines, chunk stage"),
        ("lines_end_to_end", "removed lines, end to end"),
      ):
        m = r[key]
        frows.append((who, label, m["f1"], m["precision"], m["recall"], m["support"], m["predicted"]))
    body.append(
      _table(("programmer", "measure", "F1", "precision", "recall", "teacher positives", "predicted"), frows, digits=3)
    )

  from tokensift.pipeline import distill_stages
  from tokensift.pipeline.report.distill_section import distill_html

  distilled = distill_stages.enabled(ctx)
  scores = list(distill_stages.score_records(ctx).values()) if ("distill" if distilled else "score") in sums else []
  dens_file = run_dir / "density" / "density.parquet"
  sel_ids: set[str] = set()
  if "select" in sums:
    from tokensift.selection.variants import read_id_list

    sel_ids = set(read_id_list(run_dir / "select" / sums["select"]["id_list"]))
  if scores:
    body.append("<h2>ASK-LLM scores and DENSITY</h2>")
    s_ids = [str(r["id"]) for r in scores]
    s_val = np.array([r["score"] for r in scores], np.float64)
    s_sel = np.array([i in sel_ids for i in s_ids])
    title = "ASK-LLM P(yes)" + (" (judge + distilled head)" if distilled else "")
    imgs = [plot_hist(s_val, title, "P(yes)", out / "score_hist.png", s_sel)]
    if dens_file.exists():
      import pyarrow.parquet as pq

      t = pq.read_table(dens_file).to_pydict()
      d_map = dict(zip(map(str, t["id"]), t["log_density"]))
      d_val = np.array(t["log_density"], np.float64)
      d_sel = np.array([str(i) in sel_ids for i in t["id"]])
      imgs.append(plot_hist(d_val, "DENSITY", "log kernel sum", out / "density_hist.png", d_sel))
      both = [i for i in s_ids if i in d_map]
      pos = {i: k for k, i in enumerate(s_ids)}
      imgs.append(
        plot_scatter(
          np.array([s_val[pos[i]] for i in both]),
          np.array([d_map[i] for i in both]),
          np.array([i in sel_ids for i in both]),
          out / "density_vs_score.png",
        )
      )
    body.append("".join(f'<img src="{i}" style="max-width:49%">' for i in imgs))
    if "select" in sums:
      s = sums["select"]
      body.append(
        f"<p>Selection: {s['docs_out']} of {s['docs_in']} documents "
        f"({html.escape(json.dumps(as_json(ctx.config.selection)))}).</p>"
      )
  body.append(distill_html(sums.get("distill"), ctx.config.score.job.model, ctx.config.score.judge_docs))

  refined = _records(run_dir, "refine", "refine")
  if refined:
    body.append("<h2>Refined documents (removed lines struck through)</h2>")
    body.append(_examples_html(refined, ctx.config.report.examples, f"programmer: {ctx.config.refine.programmer}"))
    rules = _records(run_dir, "refine_rules", "refine")
    if rules:
      body.append(_examples_html(rules, ctx.config.report.examples, "programmer: rules"))

  ev = sums.get("evaluate")
  if ev:
    if ev.get("token_view"):
      shutil.copyfile(run_dir / "evaluate" / ev["token_view"], out / "token_view.html")
      body.append(
        "<h2>Rho-1 token selection</h2><p>A held-out document under the SLM run: selected tokens red "
        "(darker = larger excess loss over the reference model), unselected blue "
        '(<a href="token_view.html">open</a>).</p><iframe src="token_view.html"></iframe>'
      )
    curves = {}
    for run in ctx.config.lm.runs:
      d = run_dir / "train" / run
      recs = jobs.read_records(d / "metrics.jsonl", missing_ok=True)
      curves[run] = ([r for r in recs if r["split"] == "train"], [r for r in recs if r["split"] == "eval"])
    img = plot_curves(curves, out / "curves.png")
    body.append("<h2>Training and validation: SLM vs CLM vs the whole refined pool</h2>")
    if img:
      body.append(f'<img src="{img}">')
    body.append(
      _table(
        ("run", "loss", "data", "steps", "final train CE", "final val CE", "val perplexity", "best val CE"),
        [
          (
            r["run"],
            r["loss"],
            r["data"],
            r["steps"],
            r["final_train_ce"],
            r["final_val_ce"],
            r["final_val_ppl"],
            r["best_val_ce"],
          )
          for r in ev["table"]
        ],
        digits=3,
      )
    )
  page = (
    f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>tokensift pipeline report</title>'
    f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>"
  )
  path = out / "index.html"
  jobs.atomic_write_bytes(path, page.encode("utf-8"))
  return path
