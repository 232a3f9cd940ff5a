"""Quiet start-up: TensorFlow/XLA print banners on every start (oneDNN notices, "Could not find cuda drivers",
"failed call to cuInit: ... CUDA error" on a machine without a GPU) that read like failures. ``tokensift`` hides
them unless ``--verbose``; nothing here changes which devices JAX or TF use (GPU users keep their GPUs).

Two parts, both before anything heavy is imported:
  - ``TF_CPP_MIN_LOG_LEVEL=3`` (TF's and XLA's C++ warnings and errors, the cuInit line among them) and a filter
    on the absl/jax/tensorflow Python loggers for their start-up notices (``LOG_NOISE``);
  - a filter on file descriptor 2 for the lines printed before absl's C++ logging is initialized, which no
    setting silences (``WARNING: All log messages before absl::InitializeLog() ...``, the oneDNN and
    cuda-driver notices). No library offers this (the lines come from C++ straight to fd 2), so it is a pipe and
    a thread here: every other byte is passed through unchanged and Python's own ``sys.stderr`` (progress bars,
    errors) writes to the terminal directly.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading

# The start-up notices only; anything else written to fd 2 is kept.
NOISE = re.compile(
  rb"All log messages before absl::InitializeLog\(\) is called|oneDNN custom operations are on|"
  rb"Could not find cuda drivers on your machine|failed call to cuInit|Unable to register cu(DNN|FFT|BLAS) factory|"
  rb"TF-TRT Warning|This TensorFlow binary is optimized to use available CPU instructions|"
  rb"computation placer already registered|To enable the following instructions"
)


# Start-up notices logged through Python logging (absl's logger, jax's backend probe): dropped by message, so that
# the warnings users need (e.g. a task source's skipped bad rows, through absl) still show.
LOG_NOISE = re.compile(
  r"T5 library uses PAD_ID=0|An NVIDIA GPU may be present|Unable to initialize backend|"
  r"CUDA backend failed to initialize|TensorFlow binary is optimized|"
  r"is deprecated and will be removed in a future version"
)  # TF's own deprecation notices


class _DropNoise(logging.Filter):
  def filter(self, record: logging.LogRecord) -> bool:
    try:
      return not LOG_NOISE.search(record.getMessage())
    except Exception:  # noqa: BLE001  a record that cannot format itself is not ours to drop
      return True


def silence_logging_env() -> None:
  """Environment and Python logging settings (safe in-process: nothing is redirected)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  for name in ("absl", "jax._src.xla_bridge", "tensorflow"):
    logger = logging.getLogger(name)
    if not any(isinstance(f, _DropNoise) for f in logger.filters):
      logger.addFilter(_DropNoise())


def filter_native_stderr(noise: re.Pattern = NOISE) -> None:
  """Routes fd 2 through a filter that drops lines matching ``noise``; restored at exit."""
  try:
    sys.stderr.flush()
    saved = os.dup(2)
    read_fd, write_fd = os.pipe()
  except OSError:
    return
  # Python's writes go to the real stderr (a tty stays a tty for progress bars).
  sys.stderr = open(
    saved,
    "w",
    buffering=1,
    encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
    errors="backslashreplace",
    closefd=False,
  )
  os.dup2(write_fd, 2)
  os.close(write_fd)

  def pump() -> None:
    pending = b""
    with open(read_fd, "rb", buffering=0) as r:
      while chunk := r.read(65536):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()  # an unfinished line waits for its end (or EOF)
        kept = b"".join(line + b"\n" for line in lines if not noise.search(line))
        if kept:
          os.write(saved, kept)
    if pending and not noise.search(pending):
      os.write(saved, pending)

  thread = threading.Thread(target=pump, name="tokensift-stderr-filter", daemon=True)
  thread.start()

  def restore() -> None:
    try:
      sys.stderr.flush()
    except (OSError, ValueError):
      pass
    os.dup2(saved, 2)  # closes the pipe's last write end: the pump reads EOF and flushes what is left
    thread.join(timeout=2.0)

  atexit.register(restore)
