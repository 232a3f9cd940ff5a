"""JAX's persistent compilation cache, switched on for one block (a command, a training run) and restored after,
so a rerun or a resumed job does not compile its shapes again."""

from __future__ import annotations

import contextlib
from pathlib import Path


@contextlib.contextmanager
def persistent_compilation_cache(directory: str | Path | None, min_compile_secs: float = 1.0):
  """Caches compiled programs that took at least ``min_compile_secs`` in ``directory`` (created) while the block
  runs; JAX's previous settings are restored after. ``None`` or ``""`` does nothing."""
  if not directory:
    yield
    return
  import jax
  from jax.experimental.compilation_cache import compilation_cache as cc

  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")
  old = {n: getattr(jax.config, n) for n in names}
  directory = Path(directory).expanduser()
  directory.mkdir(parents=True, exist_ok=True)
  jax.config.update("jax_compilation_cache_dir", str(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_secs)
  cc.reset_cache()  # JAX decides once whether the cache is on: make it look again
  try:
    yield
  finally:
    for n, v in old.items():
      jax.config.update(n, v)
    cc.reset_cache()
