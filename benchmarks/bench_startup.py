"""Start-up cost of ``tokensift refine`` on one C4 document: wall time and peak RSS of the command's own process
(``os.wait4``'s rusage of that child), with ``--input`` (a JSON-lines file holding the first document of the C4
validation sample) and with ``--task c4_en_raw`` (validation split, ``--shard 0/200``: one of its 200 documents),
a few repeats each. The goal (issue #25): <= 3 s and <= 300 MB with ``--input``.

    .venv/bin/python benchmarks/bench_startup.py [--repeats 3] [--python /other/venv/bin/python]

``--python`` runs the command with another interpreter (e.g. another checkout's venv, to compare before/after).
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import add_results_flag, record_results  # benchmarks/results.py (--results)

DATA = Path(os.environ.get("TOKENSIFT_DATA_DIR", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
C4_JSONL = DATA / "c4" / "jsonl" / "c4-validation-sample-1000.json.gz"
MAIN = "import sys; from tokensift.cli import main; sys.exit(main())"


def run_once(python: str, args: list[str]) -> tuple[float, float]:
  """(seconds, peak RSS in MB) of one ``tokensift`` run in its own process; raises on a failed run."""
  with tempfile.TemporaryFile() as err:
    start = time.perf_counter()
    # cwd: a neutral directory, so ``-c`` imports the interpreter's installed tokensift, not a checkout in the cwd
    proc = subprocess.Popen(
      [python, "-c", MAIN, *args], stdout=subprocess.DEVNULL, stderr=err, cwd=tempfile.gettempdir()
    )
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage (Popen has not reaped it)
    seconds = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
      err.seek(0)
      raise RuntimeError(f"tokensift {' '.join(args)} failed ({code}):\n{err.read().decode()[-2000:]}")
  return seconds, usage.ru_maxrss / 1024  # Linux: kilobytes


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--python", default=sys.executable, help="the interpreter that runs tokensift")
  add_results_flag(parser)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    one = Path(tmp) / "one.jsonl"
    with gzip.open(C4_JSONL, "rt") as f:
      one.write_text(f.readline())
    cases = {
      "refine --input (1 doc)": ["refine", "--input", str(one), "--no_progress"],
      "refine --task c4_en_raw (1 doc)": [
        "refine",
        "--task",
        "c4_en_raw",
        "--split",
        "validation",
        "--shard",
        "0/200",
        "--no_progress",
      ],
    }
    print(f"python: {args.python}; {args.repeats} runs each; peak RSS of the command's process")
    print(f"{'command':<34} {'wall s (median)':>16} {'min':>6} {'max':>6} {'peak RSS MB':>12}")
    for label, cmd in cases.items():
      results = [
        run_once(args.python, [f"--data_dir={DATA}", *cmd, "--out", str(Path(tmp) / f"{label[:14]}_{i}")])
        for i in range(args.repeats)
      ]
      secs = [s for s, _ in results]
      rss = max(m for _, m in results)
      print(f"{label:<34} {statistics.median(secs):>16.2f} {min(secs):>6.2f} {max(secs):>6.2f} {rss:>12.0f}")


if __name__ == "__main__":
  main()
  record_results("bench_startup")
