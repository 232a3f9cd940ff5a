"""The ASK-LLM score job: documents (a seqio task's source or files) → one record per document.

Output records (``score-{i:05d}-of-{n:05d}.jsonl|parquet`` via ``tokensift.core.jobs.run_sharded``, so sharded,
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
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tokensift.core import docs, jobs, paths

JOB_NAME = "score"
# The ASK-LLM prompt length (whole model input, in tokens; the document is cut to fit): the one default of
# ``ScoreJobConfig``, ``tokensift score --max_length`` and the pipeline's ``ScoreConfig`` (DESIGN §4: prefills of
# <= 512 tokens). The 2-core demo (gin_configs/pipeline/default.gin) sets 256 for its time budget.
DEFAULT_MAX_LENGTH = 512


@dataclasses.dataclass(frozen=True)
class ScoreJobConfig:
  """Everything that determines the scores (stored in the job's completion markers).

  model: a ``.gguf`` file or HF directory (Llama family, decoder-only) or an HF T5 directory / T5X checkpoint
    (encoder-decoder); default SmolLM2-135M-Instruct (``tokensift.core.paths.smollm2_gguf()``).
  vocab: tokenizer override (``.model`` SentencePiece, ``tokenizer.json``, ``.gguf``); required for T5X
    checkpoints, which carry none.
  """

  model: str | None = None
  max_length: int = DEFAULT_MAX_LENGTH
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
    raise ValueError(
      f"scorer {str(path)!r}: unsupported model_type {model_type!r} (Llama, Mistral, Qwen2, Gemma, Gemma 2 or T5)"
    )
  return "encoder_decoder"  # T5X msgpack file / tensorstore / orbax directory


def _prompt_tokenizer(loaded, vocab: str | None, model_path: Path):
  from tokensift.selection import askllm_prompt as ap
  from tokensift.core import hf_tokenizer

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
  raise ValueError(
    f"scorer {str(model_path)!r} carries no tokenizer; pass --vocab (a SentencePiece .model, tokenizer.json or .gguf)"
  )


def build_scorer(cfg: ScoreJobConfig, mesh=None):
  """Loads the checkpoint and returns an ``askllm_scorer.AskLlmScorer`` on ``mesh`` (default: local devices
  shaped ``(cfg.mesh_data, cfg.mesh_model)``)."""
  import jax
  from tokensift.models import partitioning
  from tokensift.selection import askllm_prompt as ap
  from tokensift.selection import askllm_scorer as sc
  from tokensift.core import hf_tokenizer

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
      raise ValueError(
        f"decoder-only scorer {str(model_path)!r} has no chat template; ASK-LLM reads the answer "
        "after the instruct model's generation prompt"
      )
    fmt = ap.chat_format_from_template(
      functools.partial(hf_tokenizer.render_chat, files), cfg.max_length, add_bos=files.add_bos
    )
  else:
    fmt = ap.ChatFormat(max_length=cfg.max_length, append_eos=True)
  if mesh is None:
    mesh = partitioning.make_mesh(partitioning.MeshConfig(cfg.mesh_data, cfg.mesh_model), jax.local_devices())
  batch = sc.BatchConfig(
    tokens_per_batch=cfg.tokens_per_batch,
    max_batch=cfg.max_batch,
    min_bucket=cfg.min_bucket,
    bucket_growth=cfg.bucket_growth,
  )
  return sc.AskLlmScorer(arch, loaded.module, loaded.params, tok, fmt, mesh=mesh, batch=batch, variants=cfg.variants)


# ------------------------------------------------------------------------------------------------- the job

# multi-host helpers live in tokensift.core.multihost (shared with embed and reference losses)
from tokensift.core.multihost import DISTRIBUTED_ENV, host_shard, maybe_initialize_distributed  # noqa: E402,F401


def records_for(doc_batch: list[docs.Document], scorer) -> list[dict[str, Any]]:
  """Score records (see module docstring) for one piece of documents, in order."""
  results = scorer.score([d.text for d in doc_batch])
  return [{"id": d.id, **r.to_dict()} for d, r in zip(doc_batch, results)]


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
  """One piece's additive summary (pieces are added by ``jobs.merge_stats``; ``finish`` adds the mean)."""
  return {
    "truncated": sum(1 for r in records if r.get("truncated")),
    "tokens": sum(int(r.get("tokens", 0)) for r in records),
    "sum_score": sum(r["score"] for r in records),
  }


def finish(stats: dict[str, Any]) -> dict[str, Any]:
  n = stats["records"]
  return dict(stats, mean_score=stats.get("sum_score", 0.0) / n if n else 0.0)


def job_config(cfg: ScoreJobConfig, scorer, input_desc: str) -> dict[str, Any]:
  """What the marker stores: settings, the model file's identity and the exact prompt format's hash."""
  from tokensift.selection import askllm_prompt as ap

  model = Path(cfg.resolved_model())
  st = model.stat()
  fmt = scorer.fmt
  prompt_hash = hashlib.sha1(
    "\x00".join([ap.PROMPT_TEMPLATE, fmt.chat_prefix, fmt.chat_suffix, str(fmt.add_bos), str(fmt.append_eos)]).encode()
  ).hexdigest()[:16]
  d = dataclasses.asdict(cfg)
  d.pop("mesh_data")
  d.pop("mesh_model")  # results agree to <= 1e-5 across meshes; a resumed job may use another device count
  d.update(
    model=str(model),
    model_bytes=st.st_size if model.is_file() else None,
    prompt=prompt_hash,
    answers=dataclasses.asdict(scorer.answers),
    input=input_desc,
  )
  return d


def run_score_job(
  cfg: ScoreJobConfig,
  rows,
  out_dir: str,
  *,
  shard: jobs.ShardSpec = jobs.ShardSpec(),
  input_desc: str = "",
  piece_size: int = 1024,
  fmt: str = "jsonl",
  progress: bool = True,
  total: int | None = None,
  scorer=None,
) -> jobs.ShardResult:
  """Scores one shard of ``rows`` (a ``docs.DocumentInput``, or a callable ``shard -> rows``) into ``out_dir``
  (resumable); ``scorer`` defaults to ``build_scorer(cfg)``."""
  scorer = scorer if scorer is not None else build_scorer(cfg)
  return jobs.run_sharded(
    name=JOB_NAME,
    out_dir=out_dir,
    rows=rows,
    process=functools.partial(records_for, scorer=scorer),
    shard=shard,
    piece_size=piece_size,
    fmt=fmt,
    config=job_config(cfg, scorer, input_desc),
    summarize=summarize,
    finish=finish,
    progress=progress,
    total=total,
  )
