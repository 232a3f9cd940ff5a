"""Matplotlib for the static report: the headless backend, and figures saved as PNG next to the page."""
from __future__ import annotations

from pathlib import Path


def plt():
  """``matplotlib.pyplot`` on the Agg backend (no display; imported only when a report is drawn)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as pyplot
  return pyplot


def save(fig, path: Path, dpi: int = 110) -> str:
  """Saves ``fig`` as ``path`` (PNG), closes it and returns the file name for the page's ``<img src>``."""
  fig.tight_layout()
  fig.savefig(path, dpi=dpi)
  plt().close(fig)
  return path.name
