"""The report's section on ASK-LLM distilled (``distill_stages``): how many documents the judge scored and how
many the head, and the head's fidelity to the judge on the judged documents held out from its fit."""

from __future__ import annotations

import html
from typing import Any

from tokensift.pipeline.report import text as rt

DEFAULT_JUDGE = "SmolLM2-135M-Instruct"


def distill_html(summary: dict[str, Any] | None, judge_model: str | None, judge_docs: int | None) -> str:
  """The section from the ``distill`` stage's summary ("" without that stage). ``judge_model``:
  ``ScoreJobConfig.model`` (None = the default SmolLM2-135M-Instruct)."""
  if not summary:
    return ""
  fid, head = summary.get("fidelity") or {}, summary.get("head") or {}
  judge = DEFAULT_JUDGE if judge_model is None else str(judge_model)
  over = {k: v for k, v in (fid.get("topk_overlap") or {}).items() if v is not None}
  rows = "".join(f"<tr><td>{html.escape(k)}%</td><td>{rt.pct(v)}</td></tr>" for k, v in over.items())
  table = (
    f"<table><tr><th>top k (% of the held-out documents)</th><th>overlap with the judge's top k</th></tr>{rows}</table>"
  )
  note = (
    f"The judge here is {html.escape(judge)}"
    + (", whose own ranking is weak (see the ASK-LLM section above)" if judge_model is None else "")
    + ": fidelity to the judge is what this measures, not quality."
  )
  return (
    "<h2>ASK-LLM distilled: the judge on a part of the pool, a head on the rest</h2>"
    f"<p>The judge scored {summary['judged']} of the {rt.count(summary['docs_out'], 'refined document')} "
    f"(<code>ScoreConfig.judge_docs = {judge_docs}</code>, the documents with the smallest hash of their id). "
    f"A {html.escape(str(head.get('head')))} head on the DENSITY embeddings, fitted to the judge's logit of "
    f"P(yes) on {rt.count(head.get('train_docs') or 0, 'judged document')}, scored the other "
    f"{rt.count(summary['head_scored'], 'document')}; every later stage reads the judge's score where it has one "
    f"and the head's elsewhere. On the {rt.count(fid.get('docs') or 0, 'judged document')} held out from its fit, "
    f"the head ranks as the judge does with Spearman {rt.num(fid.get('spearman'))} and Kendall tau "
    f"{rt.num(fid.get('kendall'))}. {note}</p>" + (table if over else "")
  )
