"""The training metrics file and its reader, for every loop on the training core (written through clu's writers
by ``metric_writers.MetricsLog``).

``{model_dir}/metrics.jsonl``: one JSON object ``{"split", "step", **scalars}`` per logged step and split
(``train``, ``eval``); the pipeline's stages and report read it. A resumed run first drops the records after its
checkpoint (``truncate_metrics``), so the file always holds one curve; ``read_metrics`` reads it back.

Metrics of a step function vmapped over seeds (``core.over_seeds``) are vectors ``[seeds]``: ``host_metrics``
writes them as one scalar per seed, ``{name}/seed{k}``, and ``per_seed`` gathers them back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

METRICS_FILE = "metrics.jsonl"
SPLITS = ("train", "eval")


def truncate_metrics(path: Path, resume_step: int) -> None:
  """Drops the records of a JSON-lines metrics file written after ``resume_step`` (a resumed run logs them again)."""
  if path.exists():
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= resume_step]
    path.write_text("".join(k + "\n" for k in kept))


def read_metrics(model_dir: str | Path, split: str = "train") -> list[dict[str, Any]]:
  """The records of ``{model_dir}/metrics.jsonl`` for ``split``, in step order (records written before the
  split was recorded count as 'train')."""
  path = Path(model_dir) / METRICS_FILE
  records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
  return sorted((r for r in records if r.get("split", "train") == split), key=lambda r: r["step"])


def host_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
  """Device metrics -> Python floats: a scalar as itself, a vector ``[seeds]`` as ``{name}/seed{k}``."""
  import jax

  out: dict[str, float] = {}
  for k, v in jax.device_get(dict(metrics)).items():
    v = np.asarray(v)
    if v.ndim == 0:
      out[k] = float(v)
    elif v.ndim == 1:
      out.update({f"{k}/seed{i}": float(x) for i, x in enumerate(v)})
    else:
      raise ValueError(f"metric {k!r} has shape {v.shape}: a step's metrics are scalars or [seeds] vectors")
  return out


def per_seed(record: Mapping[str, Any], name: str) -> list[float]:
  """The ``[seeds]`` values of metric ``name`` in a record written by ``host_metrics``."""
  values = []
  while f"{name}/seed{len(values)}" in record:
    values.append(record[f"{name}/seed{len(values)}"])
  if not values:
    raise KeyError(f"no per-seed metric {name!r} in record of step {record.get('step')}: {sorted(record)}")
  return values
