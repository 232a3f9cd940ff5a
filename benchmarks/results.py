"""benchmarks/RESULTS.md, the one file of measured figures: each benchmark's ``--results`` replaces its section.

A section starts at a line ``## NAME`` (NAME: the benchmark, e.g. ``bench_shards``) and runs to the next ``## ``
line or the end of the file; the text above the first section is the file's preamble. ``record`` replaces one
section (or appends it when absent) and leaves every other byte of the file as it was, so a second identical
call changes nothing. Each recorded section starts with a stamp: the date, the machine (``platform``, the CPU
model and the number of CPUs this process may use) and the Python / jax versions.

In a benchmark script (run from this folder, as ``from timing import timed`` is)::

  from results import add_results_flag, record_results  # benchmarks/results.py
  ...
  add_results_flag(ap)                  # --results: copy what the run prints to stdout into RESULTS.md
  ...
  if __name__ == "__main__":
    main()
    record_results("bench_shards")      # no-op without --results
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import io
import os
import platform
import re
import shlex
import sys
from pathlib import Path
from typing import Sequence

RESULTS_MD = Path(__file__).resolve().with_name("RESULTS.md")
_HEADING = re.compile(r"^## (\S+)[ \t]*$", re.MULTILINE)
_capture: _Tee | None = None


def cpu_model() -> str:
  """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``), or 'unknown CPU'."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown CPU"


def _version(package: str) -> str:
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    return "not installed"


def stamp(when: datetime.datetime | None = None) -> str:
  """One line: the UTC date and time, the machine, Python and jax versions."""
  when = when or datetime.datetime.now(datetime.timezone.utc)
  cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  return (
    f"Measured {when:%Y-%m-%d %H:%M} UTC on {platform.platform()} ({platform.machine()}, {cpu_model()}, "
    f"{cpus} CPUs), Python {platform.python_version()}, jax {_version('jax')}."
  )


def _table(rows: Sequence[dict] | Sequence[Sequence]) -> str:
  """A markdown table of dict rows (keys of the first row as the header) or of sequences (the first is the header)."""
  if rows and isinstance(rows[0], dict):
    header = list(rows[0])
    body = [[row.get(k, "") for k in header] for row in rows]
  else:
    header, body = list(rows[0]), [list(r) for r in rows[1:]]
  lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(map(str, r)) + " |" for r in body]
  return "\n".join(lines)


def render(
  section: str, rows_or_text: str | Sequence, *, command: str | None = None, when: datetime.datetime | None = None
) -> str:
  """The markdown of one section: heading, stamp, command, then the text (as a code block) or a table of rows."""
  if not re.fullmatch(r"\S+", section):
    raise ValueError(f"section name {section!r}: one word without spaces, e.g. 'bench_shards'")
  if isinstance(rows_or_text, str):
    body = "```text\n" + rows_or_text.strip("\n") + "\n```"
  elif rows_or_text:
    body = _table(rows_or_text)
  else:
    raise ValueError(f"section {section!r}: no rows to record")
  head = stamp(when) + (f"\nCommand: `{command}`" if command else "")
  return f"## {section}\n\n{head}\n\n{body}\n"


def replace_section(markdown: str, section: str, block: str) -> str:
  """``markdown`` with the section ``## {section}`` replaced by ``block`` (appended at the end when absent)."""
  starts = [(m.start(), m.group(1)) for m in _HEADING.finditer(markdown)]
  for i, (start, name) in enumerate(starts):
    if name == section:
      end = starts[i + 1][0] if i + 1 < len(starts) else len(markdown)
      tail = markdown[end:]
      return markdown[:start] + block + ("\n" if tail else "") + tail
  sep = "" if not markdown or markdown.endswith("\n\n") else ("\n" if markdown.endswith("\n") else "\n\n")
  return markdown + sep + block


def record(
  section: str,
  rows_or_text: str | Sequence,
  *,
  path: str | os.PathLike = RESULTS_MD,
  command: str | None = None,
  when: datetime.datetime | None = None,
) -> Path:
  """Replace the section ``section`` of ``path`` (benchmarks/RESULTS.md) by a stamped copy of ``rows_or_text``.

  rows_or_text: the benchmark's printed output (a string, kept as a code block) or table rows (dicts, or
  sequences whose first is the header). Every other section stays byte-identical. Returns the path written.
  """
  path = Path(path)
  old = path.read_text(encoding="utf-8") if path.exists() else ""
  new = replace_section(old, section, render(section, rows_or_text, command=command, when=when))
  if new != old:
    path.write_text(new, encoding="utf-8")
  return path


class _Tee(io.TextIOBase):
  """Writes to the wrapped stream and keeps a copy."""

  def __init__(self, stream):
    self.stream, self.copy = stream, io.StringIO()

  def write(self, s: str) -> int:
    self.copy.write(s)
    return self.stream.write(s)

  def flush(self) -> None:
    self.stream.flush()

  def isatty(self) -> bool:
    return self.stream.isatty()


class _StartCapture(argparse.Action):
  """``--results``: sets the flag and from then on keeps a copy of everything the run prints to stdout."""

  def __call__(self, parser, namespace, values, option_string=None):
    global _capture
    setattr(namespace, self.dest, True)
    if _capture is None:
      _capture = _Tee(sys.stdout)
      sys.stdout = _capture


def add_results_flag(parser: argparse.ArgumentParser) -> None:
  """Adds ``--results`` to a benchmark's parser (see the module docstring)."""
  parser.add_argument(
    "--results",
    action=_StartCapture,
    nargs=0,
    default=False,
    help=f"also write what this run prints into its section of {RESULTS_MD.name} "
    "(replacing the section; stamped with the date, machine and versions)",
  )


def record_results(section: str, *, path: str | os.PathLike = RESULTS_MD) -> Path | None:
  """After a run with ``--results``: record its printed output as ``section``; without the flag, nothing."""
  global _capture
  if _capture is None:
    return None
  text = _capture.copy.getvalue()
  if sys.stdout is _capture:
    sys.stdout = _capture.stream
  _capture = None
  script = os.path.relpath(os.path.abspath(sys.argv[0]), RESULTS_MD.parent.parent)
  command = "python " + " ".join(shlex.quote(a) for a in [script, *sys.argv[1:]])
  written = record(section, text or "(no output)", path=path, command=command)
  print(f"recorded in {written}: section {section}", file=sys.stderr)
  return written
