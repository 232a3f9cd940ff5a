"""Training metrics through ``clu.metric_writers`` (as t5x writes them), for every loop on the training core.

Per split (``train``, ``eval``) one ``clu.metric_writers.MultiWriter`` of the default writer (TensorBoard events in
``{model_dir}/{split}`` plus absl log lines) and ``JsonLinesWriter``, a clu ``MetricWriter`` that appends each
``write_scalars`` call to ``{model_dir}/metrics.jsonl`` as one JSON object ``{"split", "step", **scalars}``
(the pipeline's stages and report read that file). Only process 0 writes to disk. A resumed run first drops the
records after its checkpoint (``truncate_metrics``), so the file always holds one curve; ``read_metrics`` reads
it back.

Metrics of a step function vmapped over seeds (``core.over_seeds``) are vectors ``[seeds]``: ``host_metrics``
writes them as one scalar per seed, ``{name}/seed{k}``, and ``per_seed`` gathers them back.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from clu import metric_writers

METRICS_FILE = "metrics.jsonl"
SPLITS = ("train", "eval")


class JsonLinesWriter(metric_writers.MetricWriter):
  """A clu ``MetricWriter`` for scalars: one JSON line ``{"split": split, "step": step, **scalars}`` per call,
  appended to ``path``; the other kinds of summary are not kept."""

  def __init__(self, path: str | Path, split: str):
    self.path, self.split = Path(path), split

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    record = {"split": self.split, "step": int(step), **{k: float(v) for k, v in scalars.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")

  def write_summaries(self, step, values, metadata=None) -> None:
    pass

  def write_images(self, step, images) -> None:
    pass

  def write_videos(self, step, videos) -> None:
    pass

  def write_audios(self, step, audios, *, sample_rate) -> None:
    pass

  def write_texts(self, step, texts) -> None:
    pass

  def write_histograms(self, step, arrays, num_buckets=None) -> None:
    pass

  def write_hparams(self, hparams) -> None:
    pass

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def truncate_metrics(path: Path, resume_step: int) -> None:
  """Drops the records of a JSON-lines metrics file written after ``resume_step`` (a resumed run logs them again)."""
  if path.exists():
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= resume_step]
    path.write_text("".join(k + "\n" for k in kept))


class MetricsLog:
  """``write(split, step, values)`` through one clu writer per split (see the module docstring); a run that
  resumes at ``resume_step`` truncates ``metrics.jsonl`` back to it first."""

  def __init__(self, model_dir: str | Path, resume_step: int):
    import jax
    model_dir = Path(model_dir)
    self.path = model_dir / METRICS_FILE
    lead = jax.process_index() == 0
    if lead:
      truncate_metrics(self.path, resume_step)
    self._writers = {}
    for split in SPLITS:  # collection=split: TensorBoard events in {model_dir}/{split}, log lines prefixed with it
      default = metric_writers.create_default_writer(str(model_dir), just_logging=not lead, collection=split)
      self._writers[split] = metric_writers.MultiWriter([default, JsonLinesWriter(self.path, split)] if lead
                                                        else [default])

  def write(self, split: str, step: int, values: Mapping[str, float]) -> None:
    self._writers[split].write_scalars(step, values)

  def close(self) -> None:
    for w in self._writers.values():
      w.flush()
      w.close()


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
