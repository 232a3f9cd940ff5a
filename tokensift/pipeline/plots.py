"""Matplotlib for the static report: the headless backend, and figures saved as PNG next to the page."""
from __future__ import annotations

from pathlib import Path

# Text sizes (points) for every report figure: figures are shown at their own pixel width (at most the page's),
# so a point is dpi/72 screen pixels; at the report's 100-110 dpi these read like the page's 16-px body text.
STYLE = {"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "xtick.labelsize": 10,
         "ytick.labelsize": 10, "legend.fontsize": 10, "legend.framealpha": 0.9}


def plt():
  """``matplotlib.pyplot`` on the Agg backend (no display; imported only when a report is drawn), with the
  report's text sizes (``STYLE``)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as pyplot
  pyplot.rcParams.update(STYLE)
  return pyplot


def save(fig, path: Path, dpi: int = 110) -> str:
  """Saves ``fig`` as ``path`` (PNG), closes it and returns the file name for the page's ``<img src>``."""
  fig.tight_layout()
  fig.savefig(path, dpi=dpi, bbox_inches="tight")
  plt().close(fig)
  return path.name
