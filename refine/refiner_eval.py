"""Agreement of a programmer (a trained refiner) with its teacher (the rule programmer), as F1 scores.

Pure functions of (documents, teacher programs, student programs), computed with the executor:

- **doc level** (keep/drop): positive class = ``drop_doc()``, from each program's doc-level decision
  (``executor.execute_doc``); also accuracy.
- **line level, chunk stage** (removed lines): on the documents the *teacher* keeps, the set of line indices that
  each chunk program removes when executed against the document (``executor.execute_chunk(...).removed``; a
  program ignored for errors removes nothing). This scores the chunk stage alone, as ProX scores its chunk-level
  refiner: the student's chunk programs must be written for every teacher-kept document (``student_chunk``),
  whatever its own doc-level decision.
- ``same_chunk_output``: fraction of teacher-kept documents whose chunk-stage output text is identical (a
  model writes one program per chunk, the teacher one per document, so the texts of programs are not compared);
- **line level, end to end**: over every document, a line counts as removed when it is absent from the refined
  output of both stages (``executor.execute``; a dropped document removes all its lines).

F1 = 2 TP / (2 TP + FP + FN); when the teacher and the student both have no positive at all (TP + FP + FN = 0)
they agree perfectly and F1 is 1.0 (``support`` reports how many positives the teacher had, so such a figure can
be read for what it is). The ceiling is the teacher scored against a second run of itself.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from tokensift.refine import executor as ex


@dataclasses.dataclass(frozen=True)
class Counts:
  tp: int = 0
  fp: int = 0
  fn: int = 0
  tn: int = 0

  def __add__(self, other: "Counts") -> "Counts":
    return Counts(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

  @property
  def precision(self) -> float | None:
    return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

  @property
  def recall(self) -> float | None:
    return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

  @property
  def f1(self) -> float:
    denom = 2 * self.tp + self.fp + self.fn
    return 2 * self.tp / denom if denom else 1.0

  def to_dict(self) -> dict[str, Any]:
    total = self.tp + self.fp + self.fn + self.tn
    return {
      "f1": round(self.f1, 4),
      "precision": _r(self.precision),
      "recall": _r(self.recall),
      "accuracy": _r((self.tp + self.tn) / total if total else None),
      "support": self.tp + self.fn,
      "predicted": self.tp + self.fp,
      "tp": self.tp,
      "fp": self.fp,
      "fn": self.fn,
      "tn": self.tn,
    }


def _r(x: float | None) -> float | None:
  return None if x is None else round(x, 4)


def set_counts(truth: set[int], pred: set[int], universe: int) -> Counts:
  """Counts over items ``0..universe-1`` given the positive sets."""
  tp = len(truth & pred)
  fp, fn = len(pred - truth), len(truth - pred)
  return Counts(tp, fp, fn, universe - tp - fp - fn)


def _lines(ranges) -> set[int]:
  return {i for a, b in ranges for i in range(a, b + 1)}


def chunk_removed(text: str, chunk_program: str | None, config: ex.ExecConfig = ex.DEFAULT_CONFIG) -> set[int]:
  """Line indices the chunk program removes from ``text`` (empty when it is None or ignored for errors)."""
  if chunk_program is None:
    return set()
  return _lines(ex.execute_chunk(chunk_program, text, config).removed)


def final_removed(
  text: str, doc_program: str | None, chunk_program: str | None, config: ex.ExecConfig = ex.DEFAULT_CONFIG
) -> set[int]:
  """Line indices absent from the refined document (every line when it is dropped)."""
  r = ex.execute(text, doc_program, chunk_program, config)
  if not r.kept:
    return set(range(text.count("\n") + 1))
  return _lines(r.removed)


def compare_programs(
  texts: Sequence[str],
  teacher_doc: Sequence[str],
  teacher_chunk: Sequence[str | None],
  student_doc: Sequence[str],
  student_chunk: Sequence[str | None],
  config: ex.ExecConfig = ex.DEFAULT_CONFIG,
) -> dict[str, Any]:
  """F1 figures of the student against the teacher (see the module docstring). ``*_chunk[i]`` may be None for a
  document the teacher drops (the student's chunk programs are needed for every teacher-kept document)."""
  n = len(texts)
  for name, seq in (
    ("teacher_doc", teacher_doc),
    ("teacher_chunk", teacher_chunk),
    ("student_doc", student_doc),
    ("student_chunk", student_chunk),
  ):
    if len(seq) != n:
      raise ValueError(f"{name} has {len(seq)} programs for {n} documents")
  doc, lines_chunk, lines_final = Counts(), Counts(), Counts()
  exact_doc = same_chunk = kept_docs = 0
  student_errors = 0
  for i, text in enumerate(texts):
    t_drop = ex.execute_doc(teacher_doc[i]).drop
    s_out = ex.execute_doc(student_doc[i])
    student_errors += bool(s_out.errors)
    doc += Counts(
      int(t_drop and s_out.drop),
      int(s_out.drop and not t_drop),
      int(t_drop and not s_out.drop),
      int(not t_drop and not s_out.drop),
    )
    exact_doc += teacher_doc[i].strip() == (student_doc[i] or "").strip()
    n_lines = text.count("\n") + 1
    if not t_drop:
      kept_docs += 1
      t_lines = chunk_removed(text, teacher_chunk[i], config)
      s_lines = chunk_removed(text, student_chunk[i], config)
      lines_chunk += set_counts(t_lines, s_lines, n_lines)
      same_chunk += (
        ex.execute_chunk(teacher_chunk[i], text, config).text == ex.execute_chunk(student_chunk[i], text, config).text
      )
    s_chunk = None if s_out.drop else student_chunk[i]
    t_chunk = None if t_drop else teacher_chunk[i]
    lines_final += set_counts(
      final_removed(text, teacher_doc[i], t_chunk, config),
      final_removed(text, student_doc[i], s_chunk, config),
      n_lines,
    )
  return {
    "documents": n,
    "teacher_kept": kept_docs,
    "doc": doc.to_dict(),
    "lines_chunk_stage": lines_chunk.to_dict(),
    "lines_end_to_end": lines_final.to_dict(),
    "exact_doc_programs": round(exact_doc / n, 4) if n else None,
    "same_chunk_output": round(same_chunk / kept_docs, 4) if kept_docs else None,
    "student_doc_programs_with_errors": student_errors,
  }


def rule_programs(texts: Sequence[str], profile: str = "web") -> tuple[list[str], list[str | None]]:
  """The rule programmer's (doc, chunk) programs; chunk is None for dropped documents."""
  from tokensift.refine import rules

  cfg = rules.RuleConfig.named(profile)
  out = [rules.write_program(t, cfg) for t in texts]
  return [p.doc_program for p in out], [None if p.doc_program.startswith("drop") else p.chunk_program for p in out]


def evaluate_refiner(
  texts: Sequence[str], programmer, *, profile: str = "web", config: ex.ExecConfig = ex.DEFAULT_CONFIG
) -> dict[str, Any]:
  """The trained refiner (a ``ModelProgrammer``) against the rule programmer on ``texts``, and the ceiling (the
  rule programmer against a second run of itself). Returns ``{"refiner": ..., "ceiling": ..., "programs": [...]}``
  where ``programs`` lists per document the teacher's and the refiner's programs."""
  texts = list(texts)
  t_doc, t_chunk = rule_programs(texts, profile)
  again_doc, again_chunk = rule_programs(texts, profile)
  s_doc = programmer.doc_programs(texts)
  s_chunk = programmer.chunk_programs(texts)  # every document: the chunk stage is scored on teacher-kept ones
  return {
    "refiner": compare_programs(texts, t_doc, t_chunk, s_doc, s_chunk, config),
    "ceiling": compare_programs(texts, t_doc, t_chunk, again_doc, again_chunk, config),
    "programs": [
      {"teacher_doc": a, "teacher_chunk": b, "refiner_doc": c, "refiner_chunk": d}
      for a, b, c, d in zip(t_doc, t_chunk, s_doc, s_chunk)
    ],
  }
