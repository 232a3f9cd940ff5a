"""State shared by the stages of one pipeline invocation: the config, the run directory, finished stages'
summaries, and models loaded once per process (SmolLM2 serves both ASK-LLM scoring and the reference losses)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from pathlib import Path
from typing import Any, Callable, Iterable

from tokensift.core import docs, jobs
from tokensift.pipeline.config import PipelineConfig

Rows = Callable[[docs.ShardSpec], Iterable[docs.Document | docs.Skip]]  # shard -> that shard's rows


def llama_cache_key(checkpoint: str | Path) -> str:
  """The ``Context.cache`` key of a loaded Llama-family model ``(module, params, vocab_size)``: one per checkpoint
  path, so the score stage's SmolLM2 (ASK-LLM) is reused by ``Context.reference_model`` for the reference losses."""
  return f"llama:{checkpoint}"


@dataclasses.dataclass
class Context:
  config: PipelineConfig
  run_dir: Path
  progress: bool = True
  summaries: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
  cache: dict[str, Any] = dataclasses.field(default_factory=dict)

  def dir(self, stage: str) -> Path:
    return self.run_dir / stage

  @property
  def prefix(self) -> str:
    """Names of the seqio tasks this run registers start with it (unique per run directory)."""
    return "pipeline_" + hashlib.sha1(str(self.run_dir.resolve()).encode()).hexdigest()[:8]

  # ------------------------------------------------------------------------------------------- documents

  def task_rows(self, task: str, split: str, limit: int | None) -> tuple[Rows, int | None]:
    """Raw rows (``id``/``text``) of a seqio task's source through the document layer, the first ``limit`` of
    each shard's (the pipeline runs one shard)."""
    import tokensift.refine.tasks  # the pipeline reads raw and refined tasks: both registered
    import tokensift.tasks  # noqa: F401

    inp = docs.DocumentInput(task=task, split=split).validate()
    total = inp.total()
    if limit is None:
      return inp.rows, total
    return (lambda shard: itertools.islice(inp.rows(shard), limit)), (limit if total is None else min(limit, total))

  def task_texts(self, task: str, split: str, limit: int | None) -> list[str]:
    rows, _ = self.task_rows(task, split, limit)
    return [d.text for d in docs.documents_only(rows(docs.ShardSpec()), docs.ReadReport())]

  def source_rows(self) -> tuple[Rows, int | None]:
    """The real sample: ``corpus.input`` files (first ``max_docs``) or the task's split (first ``max_docs``)."""
    c = self.config.corpus
    if c.input:
      inp = docs.DocumentInput(files=(c.input,) if isinstance(c.input, str) else tuple(c.input)).validate()
      return (lambda shard: itertools.islice(inp.rows(shard), c.max_docs)), None
    return self.task_rows(c.task, c.split, c.max_docs)

  def pool_rows(self) -> tuple[Rows, int | None]:
    """The pool every document stage reads: the known-answer corpus (stage ``corpus``) when
    ``known_answer.enabled``, else the real sample itself."""
    if not self.config.known_answer.enabled:
      return self.source_rows()
    path = self.dir("corpus") / "corpus.jsonl"
    if not path.exists():
      raise FileNotFoundError(f"the known-answer corpus {str(path)!r} is missing: run the 'corpus' stage first")
    rows = jobs.read_records(path)
    return jobs.in_memory_rows([docs.Document(r["id"], r["text"]) for r in rows]), len(rows)

  def refined_records(self, stage: str = "refine") -> list[dict[str, Any]]:
    """Every record of a finished refine stage (kept and dropped), in input order."""
    key = f"records:{stage}"
    if key not in self.cache:
      files = jobs.shard_files(self.dir(stage), "refine")
      if not files:
        raise FileNotFoundError(f"stage {stage!r} has no finished refine output in {str(self.dir(stage))!r}")
      self.cache[key] = [r for f in files for r in jobs.read_records(f)]
    return self.cache[key]

  def refined_rows(self) -> Rows:
    """The documents the refine stage kept (refined text), as job rows (already in memory)."""

    def kept():
      for r in self.refined_records():
        if r["kept"]:
          yield docs.Document(str(r["id"]), r["text"])

    return jobs.in_memory_rows(kept)

  def refined_tokens(self) -> dict[str, int]:
    """SmolLM2 tokens of each kept refined document (counted by the refine job)."""
    return {str(r["id"]): int(r["stats"].get("tokens_after", 0)) for r in self.refined_records() if r["kept"]}

  # ------------------------------------------------------------------------------------------- models

  def token_counter(self):
    if "counter" not in self.cache:
      from tokensift.refine.chunks import vocab_counter
      from tokensift.tasks import vocabularies

      self.cache["counter"] = vocab_counter(vocabularies.smollm2())
    return self.cache["counter"]

  def reference_model(self) -> tuple[Any, Any, int]:
    """(module, params, vocab_size) of the reference model; SmolLM2 is reused from the score stage when that
    stage ran in this process with the same checkpoint."""
    from tokensift.core import paths

    model = self.config.reference.model
    path = str(paths.smollm2_gguf() if model == "smollm2" else Path(model).expanduser().resolve())
    key = llama_cache_key(path)
    if key not in self.cache:
      from tokensift.models.llama_loaders import load_llama

      loaded = load_llama(path, dtype=self.config.reference.dtype)
      self.cache[key] = (loaded.module, loaded.params, loaded.config.vocab_size)
    return self.cache[key]
