"""Matplotlib for the static report: the headless backend, and figures saved as PNG next to the page."""

from __future__ import annotations

from pathlib import Path

DPI = 100  # every report figure: shown at its own pixel width (at most the page's), so a point is DPI/72 pixels
# Text sizes (points) for every report figure: at DPI 100 the 11-pt body reads as 15 px, like the page's 16-px text.
STYLE = {
  "font.size": 11,
  "axes.titlesize": 12,
  "axes.labelsize": 11,
  "xtick.labelsize": 10,
  "ytick.labelsize": 10,
  "legend.fontsize": 10,
  "legend.framealpha": 0.9,
}


def plt():
  """``matplotlib.pyplot`` on the Agg backend (no display; imported only when a report is drawn), with the
  report's text sizes (``STYLE``)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as pyplot

  pyplot.rcParams.update(STYLE)  # pyright: ignore[reportCallIssue, reportArgumentType]  (matplotlib types the keys as literals)
  return pyplot


def save(fig, path: Path) -> str:
  """Saves ``fig`` as ``path`` (PNG at ``DPI``), closes it and returns the file name for the page's ``<img src>``:
  the one figure saver of the report."""
  fig.tight_layout()
  fig.savefig(path, dpi=DPI, bbox_inches="tight")
  plt().close(fig)
  return path.name
