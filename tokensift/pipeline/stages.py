"""The resumable stage runner: one folder per stage under the run directory, a stage-level completion marker
holding its configuration, timings and documents in/out, a printed table and a JSON file of them.

A stage is ``Stage(name, deps, config, run)``: ``config(ctx)`` returns the JSON-able settings that determine its
output; ``run(ctx, out_dir)`` does the work (its jobs write their own piece/shard markers inside ``out_dir``, so
a stage killed midway resumes from its finished pieces) and returns a summary with at least ``docs_in`` and
``docs_out`` (``tokens_in``/``tokens_out`` where they mean something).

The marker ``{run_dir}/{name}/STAGE_DONE.json`` stores the stage's fingerprint: the hash of its config and of its
dependencies' fingerprints. A rerun loads finished stages from their markers and does no work; a marker whose
fingerprint differs from the current configuration (a changed setting here or upstream) is an error naming the
changed keys (``restart_from`` clears that stage and every later one). An *unfinished* stage (no marker) whose
settings changed since it started (``STAGE_STARTED.json``) has its folder cleared before it runs: its partial
job pieces were made with the old settings.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from tokensift.core.jobs import atomic_write_bytes

MARKER = "STAGE_DONE.json"
STARTED = "STAGE_STARTED.json"
TIMINGS = "stage_timings.json"


class StageConfigError(ValueError):
  """A finished stage was run with other settings than the current ones."""


@dataclasses.dataclass(frozen=True)
class Stage:
  name: str
  deps: tuple[str, ...]
  config: Callable[[Any], dict[str, Any]]
  run: Callable[[Any, Path], dict[str, Any]]
  doc: str = ""


@dataclasses.dataclass
class StageRecord:
  """One stage of one pipeline invocation. ``status``: 'ran' (this invocation did the work) or 'cached'
  (loaded from the marker; ``seconds``/``cpu_seconds`` are then those of the run that did it)."""

  name: str
  status: str
  seconds: float
  cpu_seconds: float
  docs_in: int | None
  docs_out: int | None
  tokens_in: int | None
  tokens_out: int | None
  summary: dict[str, Any]
  fingerprint: str

  def row(self) -> dict[str, Any]:
    return {
      k: getattr(self, k)
      for k in ("name", "status", "seconds", "cpu_seconds", "docs_in", "docs_out", "tokens_in", "tokens_out")
    }


def _cpu() -> float:
  t = os.times()
  return t.user + t.system + t.children_user + t.children_system


def fingerprint(config: dict[str, Any], deps: Sequence[str]) -> str:
  blob = json.dumps({"config": config, "deps": list(deps)}, sort_keys=True, default=str)
  return hashlib.sha1(blob.encode()).hexdigest()[:16]


def _diff(old: Any, new: Any, prefix: str = "") -> list[str]:
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for k in sorted(set(old) | set(new)):
      out += _diff(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))
    return out
  return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def read_marker(stage_dir: Path) -> dict[str, Any] | None:
  path = stage_dir / MARKER
  return json.loads(path.read_text()) if path.exists() else None


def run_stages(
  stages: Sequence[Stage],
  ctx: Any,
  run_dir: str | Path,
  *,
  restart_from: str | None = None,
  until: str | None = None,
  log: Callable[[str], None] = print,
) -> list[StageRecord]:
  """Runs ``stages`` in order (deps must come earlier); returns one record per stage that was reached.

  ``ctx.summaries`` (a dict) receives each finished stage's summary before later stages run. ``restart_from``
  deletes that stage's folder and every later stage's, then runs them again. ``until``: stop after that stage.
  """
  run_dir = Path(run_dir)
  run_dir.mkdir(parents=True, exist_ok=True)
  names = [s.name for s in stages]
  for extra in (restart_from, until):
    if extra is not None and extra not in names:
      raise ValueError(f"unknown stage {extra!r}; the stages are {names}")
  if restart_from is not None:
    for s in stages[names.index(restart_from) :]:
      shutil.rmtree(run_dir / s.name, ignore_errors=True)
  fps: dict[str, str] = {}
  records: list[StageRecord] = []
  for stage in stages:
    missing = [d for d in stage.deps if d not in fps]
    if missing:
      raise ValueError(f"stage {stage.name!r} depends on {missing}, which do not run before it")
    cfg = stage.config(ctx)
    fp = fingerprint(cfg, [fps[d] for d in stage.deps])
    out_dir = run_dir / stage.name
    marker = read_marker(out_dir)
    if marker is not None:
      if marker["fingerprint"] != fp:
        changes = _diff(marker.get("config"), json.loads(json.dumps(cfg, default=str)))
        raise StageConfigError(
          f"stage {stage.name!r} in {str(out_dir)!r} finished with other settings"
          + (f" ({'; '.join(changes[:6])})" if changes else " (an upstream stage changed)")
          + f"; use another --run_dir or rerun with --restart_from {stage.name}"
        )
      rec = StageRecord(
        stage.name, "cached", marker["seconds"], marker["cpu_seconds"], *_io(marker["summary"]), marker["summary"], fp
      )
      log(f"[{stage.name}] done before ({rec.seconds:.1f} s then): nothing to do")
    else:
      log(f"[{stage.name}] running{': ' + stage.doc if stage.doc else ''}")
      started = out_dir / STARTED
      if started.exists() and json.loads(started.read_text()).get("fingerprint") != fp:
        log(f"[{stage.name}] clearing unfinished work made with other settings")
        shutil.rmtree(out_dir)
      out_dir.mkdir(parents=True, exist_ok=True)
      if not started.exists():
        atomic_write_bytes(started, json.dumps({"fingerprint": fp, "config": cfg}, default=str).encode())
      t0, c0 = time.perf_counter(), _cpu()
      summary = stage.run(ctx, out_dir)
      seconds, cpu = round(time.perf_counter() - t0, 2), round(_cpu() - c0, 2)
      summary = json.loads(json.dumps(summary, default=str))
      info = {
        "stage": stage.name,
        "fingerprint": fp,
        "deps": {d: fps[d] for d in stage.deps},
        "config": json.loads(json.dumps(cfg, default=str)),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "summary": summary,
      }
      atomic_write_bytes(out_dir / MARKER, json.dumps(info, indent=1, sort_keys=True).encode())
      rec = StageRecord(stage.name, "ran", seconds, cpu, *_io(summary), summary, fp)
      log(f"[{stage.name}] finished in {seconds:.1f} s (cpu {cpu:.1f} s)")
    ctx.summaries[stage.name] = rec.summary
    fps[stage.name] = fp
    records.append(rec)
    if stage.name == until:
      break
  write_timings(run_dir, records)
  return records


def _io(summary: dict[str, Any]) -> tuple[int | None, int | None, int | None, int | None]:
  return summary.get("docs_in"), summary.get("docs_out"), summary.get("tokens_in"), summary.get("tokens_out")


def write_timings(run_dir: Path, records: Sequence[StageRecord]) -> Path:
  ran = [r for r in records if r.status == "ran"]
  data = {
    "stages": [r.row() for r in records],
    "total_seconds_recorded": round(sum(r.seconds for r in records), 2),
    "total_seconds_this_invocation": round(sum(r.seconds for r in ran), 2),
    "total_cpu_seconds_recorded": round(sum(r.cpu_seconds for r in records), 2),
  }
  path = Path(run_dir) / TIMINGS
  atomic_write_bytes(path, json.dumps(data, indent=1).encode())
  return path


def format_table(records: Sequence[StageRecord]) -> str:
  """A plain-text table: stage, status, wall and CPU seconds, documents and tokens in/out."""

  def fmt(v):
    return "-" if v is None else (f"{v:,}" if isinstance(v, int) else f"{v:,.1f}")

  head = ("stage", "status", "wall s", "cpu s", "docs in", "docs out", "tokens in", "tokens out")
  rows = [
    (
      r.name,
      r.status,
      fmt(float(r.seconds)),
      fmt(float(r.cpu_seconds)),
      fmt(r.docs_in),
      fmt(r.docs_out),
      fmt(r.tokens_in),
      fmt(r.tokens_out),
    )
    for r in records
  ]
  total = sum(r.seconds for r in records)
  rows.append(("total", "", fmt(float(total)), fmt(float(sum(r.cpu_seconds for r in records))), "", "", "", ""))
  widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
  line = lambda cells: "  ".join(
    str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
  )
  return "\n".join([line(head), line(["-" * w for w in widths])] + [line(r) for r in rows])
