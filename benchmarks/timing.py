"""Shared by the forward-pass benchmarks: wall-clock times of repeated calls after one warm-up call."""
import time


def timed(fn, repeats: int) -> list[float]:
  """Seconds of each of ``repeats`` calls of ``fn()``, after one warm-up call (jit compile / torch set-up)."""
  fn()
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return times
