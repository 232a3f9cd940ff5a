"""How many documents a selection keeps at a sampling rate: the one rule every selector uses.

Rates are **percentages** in (0, 100] everywhere in the API (the paper's 10, 20, 40, 60, 80; ``SelectConfig.rates``,
``--rates``, the pipeline's ``selection.rate`` and ``ablation.rate``, ``askllm_fraction``). The number kept of
``n`` documents at ``rate`` percent is

    k = floor(n * rate / 100 + 1/2)      (round half up: 145 at 10% keeps 15, never Python's banker's 14)

computed exactly (the rate as the decimal it prints as, then rational arithmetic, so 0.1 is one tenth and no float
error moves a half), raised to 1 when ``n > 0`` (a rate never empties a non-empty pool) and never above ``n``.

ASK-LLM top-k (``topk``, ``beam_select.run_topk``), DENSITY and its top-k / bottom-k / random baselines
(``select_job``, ``beam_select.run_select``), the perplexity filters and random baseline of the evidence report
(``tokensift.pipeline.detection``) all call ``keep_count``, so at one rate and pool every selector keeps the same k.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

PAPER_RATES = (10, 20, 40, 60, 80)  # the paper's sampling rates, percent


def check_rate(rate, what: str = "rate") -> float:
  """``rate`` as a float after checking that it is a percentage in (0, 100]; ValueError naming it otherwise."""
  if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 < float(rate) <= 100:
    raise ValueError(f"{what} {rate!r} must be a percentage in (0, 100] (e.g. 10 for 10%)")
  return float(rate)


def keep_count(n: int, rate: float) -> int:
  """Documents kept of ``n`` at ``rate`` percent: round half up of ``n * rate / 100``, at least 1 when ``n > 0``,
  at most ``n`` (see the module docstring). ValueError naming a bad ``n`` or ``rate``."""
  if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
    raise ValueError(f"document count n={n!r} must be an int >= 0")
  exact = Fraction(int(n)) * Fraction(repr(check_rate(rate))) / 100
  return min(int(n), max(1 if n else 0, math.floor(exact + Fraction(1, 2))))
