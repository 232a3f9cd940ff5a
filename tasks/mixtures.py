"""seqio mixtures: C4 + OpenWebMath, and a selection variant mixed with its full corpus.

Rates are seqio's relative mixing rates: each example comes from a task with probability rate / sum(rates).
Names (the rate as a percent of the *first-named* part, ``variants.rate_tag`` style):
- ``c4_owm_mix{p}``: ``p``% OpenWebMath (``owm_raw``) and the rest C4 (``c4_en_raw``); ``c4_owm_mix{p}_smollm2``
  (the ``_smollm2`` tasks) and ``c4_owm_mix{p}_span_corruption`` (the span-corruption tasks) alike.
  Registered: ``p`` = 50 (``register_mixtures``); ``c4_owm_mixture(p, suffix)`` makes others.
- ``{variant}_mix{p}``: ``p``% from the selection variant (e.g. ``c4_en_askllm_r20``) and the rest from its full
  corpus (the task named with ``_raw``: ``c4_en_raw``); ``mix_with_full(variant, p)``. ``register_mixtures``
  registers ``_mix50`` for every registered selection variant (``{base}_{method}_r{rate}[suffix]``).
"""

from __future__ import annotations

import re
from typing import Sequence

import seqio

DEFAULT_PERCENT = 50
_SUFFIXES = ("", "_smollm2", "_span_corruption")
_VARIANT = re.compile(
  r"^(?P<base>c4_en|owm)_(?P<tag>[A-Za-z0-9_]+?_r[0-9]+(?:p[0-9]+)?)"
  r"(?P<suffix>_smollm2|_span_corruption)?$"
)


def _percent_tag(percent: float) -> str:
  if not 0 < percent < 100:
    raise ValueError(f"mixing percent {percent!r} must be strictly between 0 and 100")
  return str(int(percent)) if float(percent) == int(percent) else str(percent).replace(".", "p")


def add_mixture(name: str, tasks_and_rates: Sequence[tuple[str, float]], *, replace: bool = True) -> seqio.Mixture:
  """Registers ``name`` over registered tasks (``[(task, rate), ...]``); raises ValueError naming a missing task."""
  for task, _ in tasks_and_rates:
    if task not in seqio.TaskRegistry.names() and task not in seqio.MixtureRegistry.names():
      raise ValueError(f"mixture {name!r}: task {task!r} is not registered")
  if name in seqio.MixtureRegistry.names():
    if not replace:
      return seqio.MixtureRegistry.get(name)
    seqio.MixtureRegistry.remove(name)
  return seqio.MixtureRegistry.add(name, list(tasks_and_rates))


def c4_owm_mixture(owm_percent: float = DEFAULT_PERCENT, suffix: str = "", **kw) -> seqio.Mixture:
  """``c4_owm_mix{p}{suffix}``: ``owm_percent``% ``owm{...}`` and the rest ``c4_en{...}`` examples."""
  if suffix not in _SUFFIXES:
    raise ValueError(f"suffix {suffix!r}; use one of {_SUFFIXES}")
  tag = _percent_tag(owm_percent)
  if suffix == "_span_corruption":
    from tokensift.tasks import span_corruption

    owm = span_corruption.span_corruption_variant("owm_raw", replace=False).name
    c4 = "c4_en_raw_span_corruption"
  else:
    owm, c4 = f"owm_raw{suffix}", f"c4_en_raw{suffix}"
  return add_mixture(f"c4_owm_mix{tag}{suffix}", [(c4, 100 - owm_percent), (owm, owm_percent)], **kw)


def full_task(variant: str) -> str:
  """The full corpus a selection variant was drawn from: ``c4_en_askllm_r20_smollm2`` -> ``c4_en_raw_smollm2``."""
  m = _VARIANT.match(variant)
  if not m:
    raise ValueError(f"{variant!r} is not a selection variant name ({{c4_en|owm}}_{{method}}_r{{rate}}[suffix])")
  if m["suffix"] == "_span_corruption":
    return f"{m['base']}_raw_span_corruption"
  return f"{m['base']}_raw{m['suffix'] or ''}"


def mix_with_full(
  variant: str, selected_percent: float = DEFAULT_PERCENT, full: str | None = None, **kw
) -> seqio.Mixture:
  """``{variant}_mix{p}``: ``selected_percent``% of examples from ``variant`` and the rest from ``full``
  (default ``full_task(variant)``)."""
  full = full or full_task(variant)
  name = f"{variant}_mix{_percent_tag(selected_percent)}"
  return add_mixture(name, [(variant, selected_percent), (full, 100 - selected_percent)], **kw)


def register_mixtures() -> list[str]:
  """The C4 + OWM mixtures at 50% (three vocabularies/objectives) and ``_mix50`` of every registered selection
  variant; idempotent; returns the names."""
  names = [c4_owm_mixture(DEFAULT_PERCENT, s, replace=False).name for s in _SUFFIXES]
  for task in sorted(seqio.TaskRegistry.names()):
    m = _VARIANT.match(task)
    if m and full_task(task) in seqio.TaskRegistry.names():
      names.append(mix_with_full(task, DEFAULT_PERCENT, replace=False).name)
  return names
