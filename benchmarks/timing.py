"""Shared by the benchmarks: wall-clock times of repeated calls after one warm-up call."""

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


def budgeted(fn, budget_s: float, *, min_repeats: int = 1, max_repeats: int = 1000, warmup: bool = True) -> list[float]:
  """Seconds of each call of ``fn()`` (after one warm-up call unless ``warmup=False``): at least ``min_repeats``
  calls, then more while the timed calls took less than ``budget_s`` in all, at most ``max_repeats``.
  ``fn`` must wait for its own result (``block_until_ready``, a host copy) so that each time is the work's."""
  if warmup:
    fn()
  times: list[float] = []
  while len(times) < max_repeats and (len(times) < min_repeats or sum(times) < budget_s):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return times
