"""``register_all``: every tokensift task family, idempotently (safe to call again, e.g. after
``seqio.TaskRegistry.reset()``).

It registers the raw tasks (``registry``), the span-corruption and prefix tasks (``span_corruption``), the
families that packages above this one add through ``registry.add_registrar`` when they are imported
(``tokensift.refine.tasks``: ProX-refined tasks; ``tokensift.selection.variants``: selections named in
``$TOKENSIFT_SELECTIONS``), the span-corruption form of every C4 selection variant, and the mixtures. This
package never imports those packages (layer contract, ``.importlinter``): a program that wants their tasks
imports their modules, or ``tokensift.all_tasks`` for all of them. Kept apart from ``registry`` because the
families import ``registry`` themselves.
"""

from __future__ import annotations

from tokensift.tasks import mixtures, registry, span_corruption


def register_all() -> list[str]:
  """Registers every task family (see the module docstring); returns the names registered."""
  names = registry.register_raw_tasks()
  names.extend(span_corruption.register_span_corruption_tasks())
  names.extend(registry.run_registrars())
  names.extend(span_corruption.register_span_corruption_variants())  # of every registered C4 selection variant
  names.extend(mixtures.register_mixtures())
  return names
