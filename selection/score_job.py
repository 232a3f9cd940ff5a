"""The ASK-LLM score job: documents (a seqio task's source or files) → one record per document.

Output records (``score-{i:05d}-of-{n:05d}.jsonl|parquet`` via ``tokensift.jobs.run_sharded``, so sharded,
resumable and byte-identical after SIGKILL + rerun)::

  {"id", "score" (= P("yes")), "logp_yes", "logp_no", ["logp_yes_variants", "logp_no_variants"],
   "tokens" (model input length), "truncated" (document cut to fit the context)}

Bad rows (empty or whitespace-only text, missing id, malformed JSON, invalid UTF-8, > 10 MB) are counted by
reason in the shard stats (``skipped``) and never silently dropped.

Multi-host: with ``distributed=True`` (or ``$TOKENSIFT_DISTRIBUTED=1``) ``jax.distributed.initialize()`` runs
first; every process then scores its own job shard, ``host_shard(shard, process_index, process_count)``, on
a mesh of its local devices (scoring needs no cross-host collectives; model parallelism stays within a host).
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from tokensift import docs, jobs, paths

JOB_NAME = "score"
DISTRIBUTED_ENV = "TOKENSIFT_DISTRIBUTED"


@dataclasses.dataclass(frozen=True)
class ScoreJobConfig:
  """Everything that determines the scores (stored in the job's completion markers).

  model: a ``.gguf`` file or HF directory (Llama family, decoder-only) or an HF T5 directory / T5X checkpoint
    (encoder-decoder); default SmolLM2-135M-Instruct (``tokensift.paths.smollm2_gguf()``).
  vocab: tokenizer override (``.model`` SentencePiece, ``tokenizer.json``, ``.gguf``); required for T5X
    checkpoints, which carry none.
  """
  model: str | None = None
  max_length: int = 512
  dtype: str = "float32"
  variants: bool = True
  vocab: str | None = None
  tokens_per_batch: int = 16384
  max_batch: int = 64
  min_bucket: int = 64
  bucket_growth: float = 1.25
  mesh_data: int = -1
  mesh_model: int = 1

  def resolved_model(self) -> str:
    return str(Path(self.model).expanduser().resolve()) if self.model else str(paths.smollm2_gguf())


def detect_architecture(model_path: str | os.PathLike) -> str:
  """``"decoder_only"`` for a .gguf file or an HF Llama/Mistral/Qwen2/Gemma/Gemma 2 dir, ``"encoder_decoder"`` for
  T5 (HF or T5X)."""
  path = Path(model_path)
  if not path.exists():
    raise FileNotFoundError(f"scorer checkpoint {str(path)!r} does not exist")
  if path.suffix == ".gguf":
    return "decoder_only"
  cfg = path / "config.json"
  if path.is_dir() and cfg.exists():
    model_type = json.loads(cfg.read_text()).get("model_type", "")
    if model_type in ("t5", "mt5", "umt5"):
      return "encoder_decoder"
    if model_type in ("llama", "mistral", "qwen2", "gemma", "gemma2", "smollm"):
      return "decoder_only"
    raise ValueError(f"scorer {str(path)!r}: unsupported model_type {model_type!r} (Llama, Mistral, Qwen2, Gemma, "
                     "Gemma 2 or T5)")
  return "encoder_decoder"  # T5X msgpack file / tensorstore / orbax directory


def _prompt_tokenizer(loaded, vocab: str | None, model_path: Path):
  from tokensift.selection import askllm_prompt as ap
  from tokensift import hf_tokenizer
  if vocab:
    if vocab.endswith(".model"):
      return ap.SentencePiecePromptTokenizer.from_file(vocab), None
    files = hf_tokenizer.tokenizer_files(vocab)
    return ap.HFPromptTokenizer.from_files(files), files
  if loaded.tokenizer is not None:
    return ap.HFPromptTokenizer.from_files(loaded.tokenizer), loaded.tokenizer
  spiece = model_path / "spiece.model" if model_path.is_dir() else None
  if spiece is not None and spiece.exists():
    return ap.SentencePiecePromptTokenizer.from_file(str(spiece)), None
  raise ValueError(f"scorer {str(model_path)!r} carries no tokenizer; pass --vocab (a SentencePiece .model, "
                   "tokenizer.json or .gguf)")


def build_scorer(cfg: ScoreJobConfig, mesh=None):
  """Loads the checkpoint and returns an ``askllm_scorer.AskLlmScorer`` on ``mesh`` (default: local devices
  shaped ``(cfg.mesh_data, cfg.mesh_model)``)."""
  import jax
  from tokensift.models import partitioning
  from tokensift.selection import askllm_prompt as ap
  from tokensift.selection import askllm_scorer as sc
  from tokensift import hf_tokenizer

  model_path = Path(cfg.resolved_model())
  arch = detect_architecture(model_path)
  if arch == "decoder_only":
    from tokensift.models.llama_loaders import load_llama
    loaded = load_llama(model_path, dtype=cfg.dtype)
  else:
    from tokensift.models.t5_loaders import load_t5
    loaded = load_t5(model_path, dtype=cfg.dtype)
  tok, files = _prompt_tokenizer(loaded, cfg.vocab, model_path)
  if arch == "decoder_only":
    if files is None or not files.chat_template:
      raise ValueError(f"decoder-only scorer {str(model_path)!r} has no chat template; ASK-LLM reads the answer "
                       "after the instruct model's generation prompt")
    fmt = ap.chat_format_from_template(functools.partial(hf_tokenizer.render_chat, files), cfg.max_length,
                                       add_bos=files.add_bos)
  else:
    fmt = ap.ChatFormat(max_length=cfg.max_length, append_eos=True)
  if mesh is None:
    mesh = partitioning.make_mesh(partitioning.MeshConfig(cfg.mesh_data, cfg.mesh_model), jax.local_devices())
  batch = sc.BatchConfig(tokens_per_batch=cfg.tokens_per_batch, max_batch=cfg.max_batch,
                         min_bucket=cfg.min_bucket, bucket_growth=cfg.bucket_growth)
  return sc.AskLlmScorer(arch, loaded.module, loaded.params, tok, fmt, mesh=mesh, batch=batch,
                         variants=cfg.variants)


# ------------------------------------------------------------------------------------------------- inputs

def task_rows(task_name: str, split: str) -> Callable[[], Iterator[docs.Document | docs.Skip]]:
  """Rows of a registered seqio task's *source* (``id``, ``text``), in the source's deterministic order."""
  def rows():
    import seqio
    import tokensift.tasks
    tokensift.tasks.register_all()
    if task_name not in seqio.TaskRegistry.names():
      raise ValueError(f"unknown task {task_name!r}; `tokensift tasks --all` lists them")
    source = seqio.get_mixture_or_task(task_name).source
    if split not in source.splits:
      raise ValueError(f"task {task_name!r} has no split {split!r}; it has {list(source.splits)}")
    for n, ex in enumerate(source.get_dataset(split, shuffle=False).as_numpy_iterator()):
      row = {k: (v.decode("utf-8", "surrogateescape") if isinstance(v, bytes) and k == "id" else v)
             for k, v in ex.items() if k in ("id", "text")}
      yield docs.validate_row(row, f"{task_name}:{split}:{n}")
  return rows


def task_total(task_name: str, split: str) -> int | None:
  """Number of input examples of a task's source split when the source knows it (TFDS), else None."""
  try:
    import seqio
    n = seqio.get_mixture_or_task(task_name).source.num_input_examples(split)
    return int(n) if n else None
  except Exception:  # noqa: BLE001  (only for the progress bar; any failure means "unknown")
    return None


def file_rows(patterns: list[str], *, id_field: str = "id", text_field: str = "text",
              id_from: str = "require") -> Callable[[], Iterator[docs.Document | docs.Skip]]:
  """Rows of JSON-lines / Parquet files. ``id_from``: ``"require"`` (a row without ``id_field`` is a counted
  skip), ``"line"`` (fallback id ``{file stem}:{line}``), or a field name to fall back to (e.g. ``url``)."""
  files = docs.expand_paths(patterns)  # FileNotFoundError naming the pattern, now

  def rows():
    for path in files:
      if id_from == "require":
        yield from _iter_require_id(path, id_field, text_field)
      elif path.suffix == ".parquet":
        yield from docs.iter_parquet(path, id_field=id_field, text_field=text_field)
      else:
        yield from docs.iter_jsonl(path, id_field=id_field, text_field=text_field,
                                   id_from=None if id_from == "line" else id_from)
  return rows


def _iter_require_id(path: Path, id_field: str, text_field: str) -> Iterator[docs.Document | docs.Skip]:
  """Like ``docs.iter_jsonl``/``iter_parquet`` but with no fallback id: rows lacking one are Skips."""
  if path.suffix == ".parquet":
    import pyarrow.parquet as pq
    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
      for row in batch.to_pylist():
        yield docs.validate_row(row, f"{path.name}:row {n}", id_field=id_field, text_field=text_field)
        n += 1
    return
  opener = gzip.open if path.suffix == ".gz" else open
  with opener(path, "rb") as f:
    for lineno, raw in enumerate(f):
      where = f"{path.name}:{lineno + 1}"
      if not raw.strip():
        yield docs.Skip("blank line", where)
        continue
      try:
        row = json.loads(raw.decode("utf-8"))
      except UnicodeDecodeError:
        yield docs.Skip("invalid UTF-8", where)
        continue
      except json.JSONDecodeError as e:
        yield docs.Skip(f"malformed JSON ({e.msg})", where)
        continue
      yield docs.validate_row(row, where, id_field=id_field, text_field=text_field)


# ------------------------------------------------------------------------------------------------- the job

def maybe_initialize_distributed(enabled: bool | None = None, **kwargs) -> tuple[int, int]:
  """Runs ``jax.distributed.initialize(**kwargs)`` when ``enabled`` (default: ``$TOKENSIFT_DISTRIBUTED``);
  returns ``(process_index, process_count)``."""
  import jax
  if enabled is None:
    enabled = os.environ.get(DISTRIBUTED_ENV, "").lower() in ("1", "true", "yes")
  if enabled:
    jax.distributed.initialize(**{k: v for k, v in kwargs.items() if v is not None})
  return jax.process_index(), jax.process_count()


def host_shard(shard: jobs.ShardSpec, process_index: int, process_count: int) -> jobs.ShardSpec:
  """The job shard this host scores: job shard ``i/n`` split over ``P`` hosts is ``(i*P + p) / (n*P)``."""
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index {process_index} not in [0, {process_count})")
  return jobs.ShardSpec(shard.index * process_count + process_index, shard.count * process_count)


def records_for(doc_batch: list[docs.Document], scorer) -> list[dict[str, Any]]:
  """Score records (see module docstring) for one piece of documents, in order."""
  results = scorer.score([d.text for d in doc_batch])
  return [{"id": d.id, **r.to_dict()} for d, r in zip(doc_batch, results)]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
  n = len(records)
  return {"truncated": sum(1 for r in records if r.get("truncated")),
          "tokens": sum(int(r.get("tokens", 0)) for r in records),
          "mean_score": (sum(r["score"] for r in records) / n) if n else 0.0}


def job_config(cfg: ScoreJobConfig, scorer, input_desc: str) -> dict[str, Any]:
  """What the marker stores: settings, the model file's identity and the exact prompt format's hash."""
  from tokensift.selection import askllm_prompt as ap
  model = Path(cfg.resolved_model())
  st = model.stat()
  fmt = scorer.fmt
  prompt_hash = hashlib.sha1("\x00".join([ap.PROMPT_TEMPLATE, fmt.chat_prefix, fmt.chat_suffix,
                                          str(fmt.add_bos), str(fmt.append_eos)]).encode()).hexdigest()[:16]
  d = dataclasses.asdict(cfg)
  d.pop("mesh_data")
  d.pop("mesh_model")  # results agree to <= 1e-5 across meshes; a resumed job may use another device count
  d.update(model=str(model), model_bytes=st.st_size if model.is_file() else None, prompt=prompt_hash,
           answers=dataclasses.asdict(scorer.answers), input=input_desc)
  return d


def run_score_job(cfg: ScoreJobConfig, rows: Callable[[], Iterable[docs.Document | docs.Skip]], out_dir: str,
                  *, shard: jobs.ShardSpec = jobs.ShardSpec(), input_desc: str = "", piece_size: int = 1024,
                  fmt: str = "jsonl", progress: bool = True, total: int | None = None,
                  scorer=None) -> jobs.ShardResult:
  """Scores one shard of ``rows`` into ``out_dir`` (resumable); ``scorer`` defaults to ``build_scorer(cfg)``."""
  scorer = scorer if scorer is not None else build_scorer(cfg)
  return jobs.run_sharded(name=JOB_NAME, out_dir=out_dir, rows=rows,
                          process=functools.partial(records_for, scorer=scorer), shard=shard,
                          piece_size=piece_size, fmt=fmt, config=job_config(cfg, scorer, input_desc),
                          summarize=summarize, progress=progress, total=total)
