"""``run_pipeline``: the default stages in order, the stage runner, the timing table and the report."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from tokensift.core.jobs import atomic_write_bytes
from tokensift.pipeline import corpus_stages, evidence_stages, lm_stages
from tokensift.pipeline.config import PipelineConfig, as_json
from tokensift.pipeline.context import Context
from tokensift.pipeline.stages import Stage, StageRecord, format_table, run_stages


def _report_config(ctx: Context) -> dict[str, Any]:
  return as_json(ctx.config.report)


def _report(ctx: Context, out: Path) -> dict[str, Any]:
  from tokensift.pipeline.report.page import write_report

  path = write_report(ctx, out)
  images = sorted(p.name for p in out.glob("*.png"))
  return {"html": path.name, "images": images, "docs_in": None, "docs_out": None}


def build_stages(ctx: Context) -> list[Stage]:
  stages = (
    evidence_stages.stages(ctx) + corpus_stages.stages(ctx) + evidence_stages.late_stages(ctx) + lm_stages.stages(ctx)
  )
  stages.append(
    Stage("report", tuple(s.name for s in stages), _report_config, _report, "static HTML report with PNG plots")
  )
  return stages


def run_pipeline(
  config: PipelineConfig,
  run_dir: str | Path,
  *,
  progress: bool = True,
  restart_from: str | None = None,
  until: str | None = None,
  log: Callable[[str], None] = print,
) -> list[StageRecord]:
  """Runs (or resumes) every stage into ``run_dir``; prints and writes (``stage_timings.json``) the stage table,
  and writes ``pipeline.json`` (config + records). Returns the stage records."""
  run_dir = Path(run_dir).expanduser().resolve()
  ctx = Context(config, run_dir, progress=progress)
  t0 = time.perf_counter()
  records = run_stages(build_stages(ctx), ctx, run_dir, restart_from=restart_from, until=until, log=log)
  log("\n" + format_table(records))
  info = {
    "config": as_json(config),
    "run_dir": str(run_dir),
    "seconds_this_invocation": round(time.perf_counter() - t0, 2),
    "stages": [r.row() for r in records],
  }
  atomic_write_bytes(run_dir / "pipeline.json", json.dumps(info, indent=1).encode())
  if "detection" in ctx.summaries or "ablations" in ctx.summaries:
    from tokensift.pipeline.evidence_summary import format_evidence

    log("\n" + format_evidence(ctx.summaries.get("detection"), (ctx.summaries.get("ablations") or {}).get("table")))
  evaluate = ctx.summaries.get("evaluate")
  if evaluate:
    log("\n" + format_validation(evaluate["table"]))
  if "report" in ctx.summaries:
    log(f"\nreport: {run_dir / 'report' / ctx.summaries['report']['html']}")
  return records


def format_validation(table: list[dict[str, Any]]) -> str:
  head = ("run", "loss", "data", "steps", "train CE", "val CE", "val ppl", "best val CE")
  rows = [
    (r["run"], r["loss"], r["data"], str(r["steps"]))
    + tuple(
      "-" if r[k] is None else f"{r[k]:.3f}" for k in ("final_train_ce", "final_val_ce", "final_val_ppl", "best_val_ce")
    )
    for r in table
  ]
  widths = [max(len(x) for x in col) for col in zip(head, *rows)]
  fmt = lambda cells: "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
  return "\n".join([fmt(head), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])
