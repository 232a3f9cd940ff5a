"""A loaded network: config, Flax module, host params and tokenizer, as every loader returns it."""

from __future__ import annotations

import dataclasses
from typing import Any

from tokensift.core.hf_tokenizer import TokenizerFiles


@dataclasses.dataclass(frozen=True)
class LoadedModel:
  """``params`` are host (numpy or jax) arrays in the module's param-tree layout; place them on a mesh with
  ``partitioning.place_params(params, partitioning.param_shardings(module, mesh, ...))``."""

  architecture: str  # "llama" | "t5" | "bert"
  config: Any  # the network's frozen dataclass config
  module: Any  # flax.linen.Module built from config
  params: Any
  tokenizer: TokenizerFiles | None = None
  source: str = ""
