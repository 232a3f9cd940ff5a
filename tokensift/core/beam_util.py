"""Apache Beam plumbing shared by tokensift's CPU pipelines: runner options and ordered, atomic output.

Runners. ``runner="local"`` (the default) is Beam's in-process portable Python runner, ``FnApiRunner``, with
``--direct_running_mode=multi_processing`` and ``--direct_num_workers=N`` (``in_memory`` for one worker). It is
chosen by name because Beam >= 2.6x routes ``DirectRunner`` to the Prism runner, which downloads a binary when
the pipeline starts: offline that download fails, Beam logs the failure and falls back (and on this machine
kind the fallback in multi-processing mode was seen to hang). Any other value (``DataflowRunner``,
``FlinkRunner``, ``SparkRunner``, ``PortableRunner``) is passed to Beam as ``--runner`` together with the
caller's own pipeline arguments (``--project``, ``--region``, ``--temp_location``, ...).

Ordered output (``WriteOrderedLines``). Beam has no global sort, but tokensift's id lists are written in
selection order and must equal the single-process files byte for byte. Elements ``(sort_key, line)`` are
range-partitioned by approximate quantiles of their keys (``beam.ApproximateQuantiles``, one pass), each part is
sorted on one worker (≈ N / parts elements) and written as a temporary file, and one final step concatenates
the parts in key order into the target path (streamed, bounded memory) and renames it into place. Paths go
through fsspec, so ``gs://`` / ``s3://`` outputs work where the matching fsspec plug-in is installed.
"""

from __future__ import annotations

import bisect
import logging
import posixpath
from typing import Any, Iterable, Sequence

LOCAL = "local"
LOCAL_RUNNER = "FnApiRunner"


def pipeline_options(runner: str = LOCAL, workers: int = 2, beam_args: Sequence[str] = ()):
  """``PipelineOptions`` for ``runner`` ('local' or a Beam runner name) plus the caller's Beam arguments."""
  from apache_beam.options.pipeline_options import PipelineOptions

  if not isinstance(workers, int) or workers < 1:
    raise ValueError(f"beam workers must be an int >= 1, got {workers!r}")
  args = list(beam_args)
  if runner == LOCAL:
    mode = "multi_processing" if workers > 1 else "in_memory"
    args = [f"--runner={LOCAL_RUNNER}", f"--direct_running_mode={mode}", f"--direct_num_workers={workers}", *args]
  elif runner:
    args = [f"--runner={runner}", *args]
  else:
    raise ValueError("empty --runner: use 'local' or a Beam runner name such as DataflowRunner")
  # Beam warns at import about optional GCP client libraries a local run never uses.
  logging.getLogger("apache_beam.io.gcp").setLevel(logging.ERROR)
  return PipelineOptions(args)


def _fs(path: str):
  from tokensift.core import storage

  return storage.url_to_fs(str(path))  # the core's one fsspec entry (plug-in hints for gs:// / s3://)


def _commit(fs, tmp: str, final: str) -> None:
  """Moves a finished temporary file into place (a rename on local disks; copy + delete on object stores)."""
  fs.mv(tmp, final)


def _part_of(key, bounds: Sequence[Any]) -> int:
  return bisect.bisect_right(bounds, key)


def _write_part(item, tmp_dir: str) -> tuple[int, str]:
  part, pairs = item
  fs, root = _fs(tmp_dir)
  lines = [line for _, line in sorted(pairs, key=lambda kv: kv[0])]
  fs.makedirs(root, exist_ok=True)
  path = posixpath.join(root, f"part-{part:06d}")
  with fs.open(path, "wb") as f:
    f.write("".join(line + "\n" for line in lines).encode("utf-8"))  # pyright: ignore[reportArgumentType]  (opened "wb")
  return part, path


def _concat(parts: Iterable[tuple[int, str]], final: str, tmp_dir: str) -> str:
  fs, target = _fs(final)
  _, tmp_root = _fs(tmp_dir)
  parent = posixpath.dirname(target)
  if parent:
    fs.makedirs(parent, exist_ok=True)
  tmp = posixpath.join(parent, f".{posixpath.basename(target)}.tmp-beam")
  with fs.open(tmp, "wb") as out:
    for _, path in sorted(parts):
      with fs.open(path, "rb") as f:
        while chunk := f.read(1 << 20):
          out.write(chunk)  # pyright: ignore[reportArgumentType]  (opened "wb")
  _commit(fs, tmp, target)
  if fs.exists(tmp_root):
    fs.rm(tmp_root, recursive=True)
  return final


def write_ordered_lines(pcoll, path: str, *, parts: int = 1000, label: str = "WriteOrdered"):
  """Writes ``(sort_key, line)`` elements of ``pcoll`` as ``path``: one line each, ascending key; returns a
  PCollection holding ``path`` once the file is in place. Keys must be totally ordered and distinct."""
  import apache_beam as beam
  from apache_beam.pvalue import AsSingleton

  if parts < 1:
    raise ValueError(f"parts must be >= 1, got {parts}")
  tmp_dir = f"{path}.parts-tmp"
  bounds = (
    pcoll
    | f"{label}/Keys" >> beam.Map(lambda kv: kv[0])
    | f"{label}/Quantiles" >> beam.ApproximateQuantiles.Globally(parts + 1)
    | f"{label}/Bounds" >> beam.Map(lambda q: list(q[1:-1]))
  )
  return (
    pcoll
    | f"{label}/Part" >> beam.Map(lambda kv, b: (_part_of(kv[0], b), kv), b=AsSingleton(bounds))
    | f"{label}/Group" >> beam.GroupByKey()
    | f"{label}/SortPart" >> beam.Map(_write_part, tmp_dir=tmp_dir)
    | f"{label}/Parts" >> beam.combiners.ToList()
    | f"{label}/Concat" >> beam.Map(_concat, final=str(path), tmp_dir=tmp_dir)
  )
