"""Training metrics through ``clu.metric_writers`` (as t5x writes them), for every loop on the training core.

Per split (``train``, ``eval``) one ``clu.metric_writers.MultiWriter`` of the default writer (TensorBoard events in
``{model_dir}/{split}`` plus absl log lines) and ``JsonLinesWriter``, a clu ``MetricWriter`` that appends each
``write_scalars`` call to ``{model_dir}/metrics.jsonl`` (``metrics``: the file, its reader). Only process 0
writes to disk. (A module of its own: clu imports TensorFlow, which the readers of the metrics need not.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from clu import metric_writers

from tokensift.trainer.metrics import METRICS_FILE, SPLITS, truncate_metrics


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
      self._writers[split] = metric_writers.MultiWriter(
        [default, JsonLinesWriter(self.path, split)] if lead else [default]
      )

  def write(self, split: str, step: int, values: Mapping[str, float]) -> None:
    self._writers[split].write_scalars(step, values)

  def close(self) -> None:
    for w in self._writers.values():
      w.flush()
      w.close()
