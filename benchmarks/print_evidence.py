"""Prints the detection figures and the ablation table of a finished `tokensift pipeline` run.

.venv/bin/python benchmarks/print_evidence.py runs/demo
"""

import json
import sys
from pathlib import Path

from tokensift.pipeline.evidence_summary import format_evidence


def main(run_dir: str) -> None:
  run = Path(run_dir)
  marker = lambda s: json.loads((run / s / "STAGE_DONE.json").read_text())["summary"]
  det = marker("detection") if (run / "detection" / "STAGE_DONE.json").exists() else None
  abl = marker("ablations")["table"] if (run / "ablations" / "STAGE_DONE.json").exists() else None
  print(format_evidence(det, abl))


if __name__ == "__main__":
  main(sys.argv[1])
