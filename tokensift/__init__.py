"""tokensift: data-efficient LM pre-training (ProX, ASK-LLM, DENSITY, Rho-1 SLM) for SeqIO and t5x."""

from pathlib import Path

__version__ = "0.1.0"


def gin_dir() -> str:
  """The directory to pass to t5x as ``--gin_search_paths``: it holds ``gin_configs/`` (the t5x launch, eval,
  infer, model and partitioning files, installed with the package), so ``--gin_file=gin_configs/t5x/...`` and
  the files' own ``include 'gin_configs/...'`` lines resolve without a checkout::

    python -m t5x.train --gin_search_paths=$(python -c 'import tokensift; print(tokensift.gin_dir())') \\
        --gin_file=gin_configs/t5x/owm_slm.gin ...

  An installed package keeps them in ``tokensift/gin_configs/`` (the directory is then the package's own); an
  editable install of a checkout reads the checkout's top-level ``gin_configs/`` (the directory is the
  checkout).
  """
  here = Path(__file__).resolve().parent
  for root in (here, here.parent):
    if (root / "gin_configs" / "t5x").is_dir():
      return str(root)
  raise FileNotFoundError(
    f"no gin_configs/ installed with tokensift (looked in {here} and {here.parent}); reinstall the package"
  )
