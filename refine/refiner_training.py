"""Supervised fine-tuning of a ProX refining model on rule-programmer annotations (ProX's recipe, DESIGN §3).

ProX fine-tunes small Llama-style decoders on (document, doc-level program) and (chunk, chunk-level program)
pairs written by a large LM. Where no such annotations exist, the rule programmer (``refine.rules``) is the
teacher: for every training document

- one **doc pair**: the doc-level prompt (``ModelProgrammer.doc_prompts``: the chat-templated raw document cut
  to ``doc_prompt_tokens``) -> ``keep_doc()`` / ``drop_doc()``;
- for documents the teacher keeps, one **chunk pair** per chunk (``ModelProgrammer.chunks``: numbered lines
  packed into chunks of ``chunk_tokens``) -> that chunk's share of the rule program
  (``RuleProgram.chunk_programs``: its line ranges and normalizations, or ``keep_chunk()``).

Prompts are built by the same ``ModelProgrammer`` that later runs the trained model, so training and inference
see identical token sequences. The target is the program's tokens plus the tokenizer's end-of-turn id; the loss
is the cross-entropy on those target tokens only (prompt tokens carry no loss), and the vocabulary projection
runs only at target positions (``[batch, program_tokens, vocab]``, not ``[batch, length, vocab]``).

Training runs on the training core (``trainer.core``), deterministic and resumable: batches come from a seeded
schedule over length buckets (few shapes compile), the state is checkpointed with orbax, metrics go through clu
writers (TensorBoard and ``metrics.jsonl``), and a rerun resumes from the last checkpoint with the schedule
replayed to it (the same losses as an uninterrupted run). ``export_hf`` writes the result as an HF Llama
directory (config.json, model.safetensors, tokenizer.json + tokenizer_config.json with the chat template) that
``ModelProgrammer.from_path`` (and ``tokensift refine --programmer DIR``) load.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from tokensift.refine import chunks as ck
from tokensift.refine import rules


@dataclasses.dataclass(frozen=True)
class RefinerModelConfig:
  """Size of the random-init Llama-family refiner (the vocabulary is the tokenizer's)."""

  hidden_size: int = 64
  intermediate_size: int = 256
  num_layers: int = 2
  num_heads: int = 4
  num_kv_heads: int = 2
  max_position_embeddings: int = 1024
  tie_word_embeddings: bool = True


@dataclasses.dataclass(frozen=True)
class RefinerTrainConfig:
  """SFT settings. ``doc_prompt_tokens``/``chunk_tokens``/``max_program_tokens`` are also the refiner's
  inference settings (``programmer_config``). ``batch_tokens``: padded tokens per batch (rows = batch_tokens //
  bucket length, at least 1); ``buckets``: padded sequence lengths (a pair longer than the last is dropped and
  counted). Program positions are padded to 16 or ``max_program_tokens + 1`` (most programs are a few tokens:
  the vocabulary projection there dominates a step's cost). ``edit_repeat``: pairs whose program changes the
  document (``drop_doc()``, chunk programs with edits) appear this many times per epoch: on C4 they are ~10%
  of doc pairs and <1% of chunk pairs, and a small refiner trained briefly otherwise learns to keep everything
  (ProX's recipe: 1). ``keep_chunk_fraction``: the share of the ``keep_chunk()`` chunk pairs drawn (afresh, seeded)
  into each epoch: chunk prompts are long and almost all say ``keep_chunk()``, so without it most steps go to
  them rather than to doc-level decisions (1.0: all of them)."""

  model: RefinerModelConfig = RefinerModelConfig()
  profile: str = "web"
  doc_prompt_tokens: int = 256
  chunk_tokens: int = 256
  max_program_tokens: int = 96
  steps: int = 300
  batch_tokens: int = 2048
  buckets: tuple[int, ...] = (128, 256, 384, 512)
  learning_rate: float = 3e-3
  warmup_steps: int = 20
  weight_decay: float = 0.0
  seed: int = 0
  checkpoint_every: int = 100
  log_every: int = 10
  edit_repeat: int = 1
  keep_chunk_fraction: float = 1.0

  def __post_init__(self):
    if self.steps < 1 or self.batch_tokens < 1 or self.max_program_tokens < 1 or self.edit_repeat < 1:
      raise ValueError(
        f"steps={self.steps}, batch_tokens={self.batch_tokens}, max_program_tokens="
        f"{self.max_program_tokens}, edit_repeat={self.edit_repeat} must all be >= 1"
      )
    if not 0.0 < self.keep_chunk_fraction <= 1.0:
      raise ValueError(f"keep_chunk_fraction={self.keep_chunk_fraction} must be in (0, 1]")
    if list(self.buckets) != sorted(set(self.buckets)) or not self.buckets or self.buckets[0] < 8:
      raise ValueError(f"buckets={self.buckets} must be increasing lengths >= 8")
    if self.buckets[-1] > self.model.max_position_embeddings:
      raise ValueError(
        f"the longest bucket {self.buckets[-1]} exceeds max_position_embeddings={self.model.max_position_embeddings}"
      )


@dataclasses.dataclass(frozen=True)
class Pair:
  """One SFT example: prompt token ids -> program token ids (ending with the end-of-turn id)."""

  prompt: tuple[int, ...]
  target: tuple[int, ...]
  kind: str  # "doc" | "chunk"
  doc: int  # index of the source document
  edits: bool = False  # the program changes the document (drop_doc(), or a chunk program other than keep_chunk())


def llama_config(model: RefinerModelConfig, vocab_size: int):
  from tokensift.models.llama import LlamaConfig

  return LlamaConfig(
    vocab_size=vocab_size,
    hidden_size=model.hidden_size,
    intermediate_size=model.intermediate_size,
    num_layers=model.num_layers,
    num_heads=model.num_heads,
    num_kv_heads=model.num_kv_heads,
    max_position_embeddings=model.max_position_embeddings,
    tie_word_embeddings=model.tie_word_embeddings,
  )


def programmer_config(cfg: RefinerTrainConfig, batch_size: int = 32):
  """The ``ModelProgrammerConfig`` matching the training prompts."""
  from tokensift.refine.model_programmer import ModelProgrammerConfig

  return ModelProgrammerConfig(
    max_new_tokens=cfg.max_program_tokens + 1,
    doc_max_new_tokens=min(16, cfg.max_program_tokens + 1),
    chunk_tokens=cfg.chunk_tokens,
    doc_prompt_tokens=cfg.doc_prompt_tokens,
    batch_size=batch_size,
  )


def _cap_program(ids_of_line: list[list[int]], cap: int) -> tuple[list[int], bool]:
  """Whole program lines (calls) while they fit in ``cap`` tokens; the newline ids between them included."""
  out: list[int] = []
  for k, ids in enumerate(ids_of_line):
    if len(out) + len(ids) > cap:
      return out, True
    out.extend(ids)
  return out, False


def build_pairs(texts: Sequence[str], programmer, cfg: RefinerTrainConfig) -> tuple[list[Pair], dict[str, int]]:
  """Teacher pairs for ``texts`` (see the module docstring). ``programmer``: a ``ModelProgrammer`` (only its
  prompt construction and tokenizer are used). Returns (pairs, counts)."""
  teacher = rules.RuleConfig.named(cfg.profile)
  eos = programmer.eos_id
  if eos is None:
    raise ValueError(f"refiner tokenizer {programmer.files.tokenizer_json} has no eos id to end programs with")
  tok = programmer.tokenizer
  budget = max(1, programmer.max_length - programmer.config.max_new_tokens)  # as ModelProgrammer.chunk_programs

  def target(program: str) -> tuple[tuple[int, ...], bool]:
    lines = program.split("\n")
    ids = [tok.encode(("\n" if k else "") + line, add_special_tokens=False).ids for k, line in enumerate(lines)]
    body, cut = _cap_program(ids, cfg.max_program_tokens)
    return tuple(body) + (eos,), cut

  counts = {
    "documents": len(texts),
    "doc_pairs": 0,
    "chunk_pairs": 0,
    "teacher_drops": 0,
    "chunks_with_edits": 0,
    "programs_truncated": 0,
  }
  pairs: list[Pair] = []
  doc_prompts = programmer.doc_prompts(list(texts))
  for i, text in enumerate(texts):
    rp = rules.write_program(text, teacher)
    t, cut = target(rp.doc_program)
    pairs.append(Pair(tuple(doc_prompts[i]), t, "doc", i, rp.doc_program.startswith("drop_doc")))
    counts["doc_pairs"] += 1
    if rp.doc_program.startswith("drop_doc"):
      counts["teacher_drops"] += 1
      continue
    chunk_list = programmer.chunks(text)
    for chunk, program in zip(chunk_list, rp.chunk_programs(chunk_list, text)):
      t, cut = target(program)
      counts["programs_truncated"] += cut
      counts["chunks_with_edits"] += program != "keep_chunk()"
      pairs.append(
        Pair(tuple(programmer.prompt_ids(ck.chunk_prompt(chunk), budget)), t, "chunk", i, program != "keep_chunk()")
      )
      counts["chunk_pairs"] += 1
  return pairs, counts


# ---------------------------------------------------------------------------------------------- batching


def bucket_of(length: int, buckets: Sequence[int]) -> int | None:
  for b in buckets:
    if length <= b:
      return b
  return None


def batch_schedule(pairs: Sequence[Pair], cfg: RefinerTrainConfig) -> Iterator[tuple[int, list[int]]]:
  """Infinite deterministic stream of ``(bucket_length, pair indices)``: per epoch a seeded permutation (pairs
  with edits ``cfg.edit_repeat`` times), cut into batches within each length bucket, batches in a seeded random
  order. Pairs that fit no bucket never appear."""
  by_bucket: dict[int, list[int]] = {}
  for i, p in enumerate(pairs):
    b = bucket_of(len(p.prompt) + len(p.target), cfg.buckets)
    if b is not None:
      by_bucket.setdefault(b, []).extend([i] * (cfg.edit_repeat if p.edits else 1))
  if not by_bucket:
    raise ValueError(f"no training pair fits the buckets {cfg.buckets}")
  plain_chunk = np.array([p.kind == "chunk" and not p.edits for p in pairs])
  epoch = 0
  while True:
    rng = np.random.default_rng([cfg.seed, epoch])
    keep = np.ones(len(pairs), bool)
    if cfg.keep_chunk_fraction < 1.0:
      keep = ~plain_chunk | (rng.random(len(pairs)) < cfg.keep_chunk_fraction)
    batches = []
    for b in sorted(by_bucket):
      pool = [i for i in by_bucket[b] if keep[i]]
      if not pool:
        continue
      members = [pool[j] for j in rng.permutation(len(pool))]
      rows = max(1, cfg.batch_tokens // b)
      batches += [(b, members[s : s + rows]) for s in range(0, len(members), rows)]
    for j in rng.permutation(len(batches)):
      yield batches[j]
    epoch += 1


def make_batch(
  pairs: Sequence[Pair], idx: Sequence[int], length: int, rows: int, program_len: int
) -> dict[str, np.ndarray]:
  """tokens int32[rows, length] (prompt + program, right-padded with 0); positions/labels int32 and weights
  float32 [rows, program_len]: hidden state ``positions[r, k]`` predicts ``labels[r, k]``."""
  tokens = np.zeros((rows, length), np.int32)
  positions = np.zeros((rows, program_len), np.int32)
  labels = np.zeros((rows, program_len), np.int32)
  weights = np.zeros((rows, program_len), np.float32)
  for r, i in enumerate(idx):
    p = pairs[i]
    seq = p.prompt + p.target
    tokens[r, : len(seq)] = seq
    n = len(p.target)
    positions[r, :n] = np.arange(len(p.prompt) - 1, len(p.prompt) - 1 + n)
    labels[r, :n] = p.target
    weights[r, :n] = 1.0
  return {"tokens": tokens, "positions": positions, "labels": labels, "weights": weights}


# ---------------------------------------------------------------------------------------------- training


def _program_logits(module, tokens, positions):
  """Bound-module method: tokens int[b, l], positions int[b, p] -> float32 logits [b, p, vocab]."""
  import jax.numpy as jnp

  hidden = module.hidden_states(tokens)
  picked = jnp.take_along_axis(hidden, positions[:, :, None].astype(jnp.int32), axis=1)
  return module.logits(picked)


def init_params(lcfg, seed: int = 0) -> Any:
  """Random params of ``Llama(lcfg)`` (``models.llama.init_params`` with ``PRNGKey(seed)``)."""
  import jax

  from tokensift.models import llama

  return llama.init_params(lcfg, jax.random.PRNGKey(seed))


class _Batches:
  """The SFT batches of ``batch_schedule`` as a core batch stream (``trainer.core.ReplayBatches``: a resume
  replays the schedule's indices, building no batch); counts the program tokens of the batches it built."""

  def __init__(self, pairs: Sequence[Pair], cfg: RefinerTrainConfig):
    from tokensift.trainer.core import ReplayBatches

    self.program_tokens = 0
    program_buckets = sorted({min(16, cfg.max_program_tokens + 1), cfg.max_program_tokens + 1})

    def make(entry: tuple[int, list[int]]) -> dict[str, np.ndarray]:
      length, idx = entry
      longest = max(len(pairs[i].target) for i in idx)
      batch = make_batch(
        pairs, idx, length, max(1, cfg.batch_tokens // length), next(b for b in program_buckets if b >= longest)
      )
      self.program_tokens += int(batch["weights"].sum())
      return batch

    self.stream = ReplayBatches(lambda: batch_schedule(pairs, cfg), make)


def _digest(pairs: Sequence[Pair]) -> str:
  """sha256 of the pairs (a resumed run must train on the same ones)."""
  import hashlib

  return hashlib.sha256(json.dumps([dataclasses.astuple(p) for p in pairs]).encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def _sft_step(
  model: RefinerModelConfig, vocab_size: int, learning_rate: float, warmup_steps: int, weight_decay: float, steps: int
):
  """(jitted train step, optimizer) of the SFT: the core's optax step on the cross-entropy of the program
  tokens; one per setting in a process, so a resumed or repeated run reuses its compiled programs."""
  import jax

  from tokensift.models import llama
  from tokensift.rho1.selective_loss import weighted_cross_entropy
  from tokensift.trainer import core, optim
  from tokensift.trainer.config import OptimizerConfig

  module = llama.Llama(llama_config(model, vocab_size))
  tx, schedule = optim.make_optimizer(
    OptimizerConfig(
      learning_rate=learning_rate, warmup_steps=warmup_steps, weight_decay=weight_decay, schedule="cosine"
    ),
    steps,
  )

  def loss_fn(p, batch, rng):
    logits: jax.Array = module.apply({"params": p}, batch["tokens"], batch["positions"], method=_program_logits)  # pyright: ignore[reportAssignmentType]  (apply without mutable: the output only)
    loss, metrics = weighted_cross_entropy(logits, batch["labels"], batch["weights"])
    return loss, {"ce_unmasked": metrics["ce_unmasked"], "program_tokens": metrics["num_valid"]}

  return jax.jit(core.make_step(loss_fn, tx, schedule)), tx


def train_refiner(
  pairs: Sequence[Pair],
  cfg: RefinerTrainConfig,
  vocab_size: int,
  work_dir: str | Path,
  *,
  params: Any = None,
  progress: bool = True,
  stop_at: int | None = None,
) -> tuple[Any, dict[str, Any]]:
  """Trains the refiner from ``params`` (default: ``init_params(seed)``) on the training core
  (``trainer.core``), or resumes from ``work_dir/checkpoints``; returns (params, summary). Metrics (``loss``,
  ``learning_rate``, ``program_tokens``, ...) go to clu writers and ``work_dir/metrics.jsonl``. ``stop_at``:
  end after that step as a preempted run would (see ``core.Trainer.train``)."""
  import jax

  from tokensift.trainer import core
  from tokensift.trainer.metrics import read_metrics

  work_dir = Path(work_dir)
  step_fn, tx = _sft_step(cfg.model, vocab_size, cfg.learning_rate, cfg.warmup_steps, cfg.weight_decay, cfg.steps)
  params = init_params(llama_config(cfg.model, vocab_size), cfg.seed) if params is None else params
  state = core.new_state(params, tx)
  batches = _Batches(pairs, cfg)
  settings = core.LoopSettings(
    num_steps=cfg.steps,
    checkpoint_every=cfg.checkpoint_every,
    log_every=cfg.log_every,
    keep_checkpoints=2,
    progress=progress,
    desc="refiner SFT",
  )
  t0 = time.perf_counter()
  data = {"pairs": len(pairs), "pairs_sha256": _digest(pairs), "config": dataclasses.asdict(cfg)}
  result = core.run(step_fn, state, batches.stream, work_dir, settings, data=data, stop_at=stop_at)
  records = read_metrics(work_dir)
  summary = {
    "steps": result.step,
    "resumed_from": result.resumed_from,
    "final_loss": records[-1]["loss"] if records else None,
    "first_loss": records[0]["loss"] if records else None,
    "train_seconds_this_run": round(time.perf_counter() - t0, 2),
    "program_tokens_this_run": batches.program_tokens,
    "params": int(sum(np.size(x) for x in jax.tree.leaves(result.state["params"]))),
  }
  return jax.device_get(result.state["params"]), summary


# ---------------------------------------------------------------------------------------------- export


def export_hf(out_dir: str | Path, lcfg, params, tokenizer_files) -> Path:
  """Writes an HF Llama directory: config.json, model.safetensors, tokenizer.json, tokenizer_config.json (special
  tokens, ``add_bos_token``, chat template). Written to a temporary directory, then renamed."""
  from safetensors.numpy import save_file
  from tokenizers import Tokenizer

  from tokensift.models.llama_loaders import hf_config_dict, hf_state_dict

  out_dir = Path(out_dir)
  tmp = out_dir.with_name(f".{out_dir.name}.tmp")
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir(parents=True)
  hf = dict(
    hf_config_dict(lcfg),
    bos_token_id=tokenizer_files.bos_id,
    eos_token_id=tokenizer_files.eos_id,
    pad_token_id=tokenizer_files.pad_id,
    torch_dtype="float32",
  )
  (tmp / "config.json").write_text(json.dumps(hf, indent=1))
  save_file(hf_state_dict(lcfg, params), str(tmp / "model.safetensors"))
  shutil.copyfile(tokenizer_files.tokenizer_json, tmp / "tokenizer.json")
  tok = Tokenizer.from_file(str(tokenizer_files.tokenizer_json))

  def name(i):
    return None if i is None else tok.id_to_token(int(i))

  (tmp / "tokenizer_config.json").write_text(
    json.dumps(
      {
        "bos_token": name(tokenizer_files.bos_id),
        "eos_token": name(tokenizer_files.eos_id),
        "pad_token": name(tokenizer_files.pad_id),
        "add_bos_token": bool(tokenizer_files.add_bos),
        "chat_template": tokenizer_files.chat_template,
        "tokenizer_class": "PreTrainedTokenizerFast",
      },
      indent=1,
    )
  )
  shutil.rmtree(out_dir, ignore_errors=True)
  tmp.rename(out_dir)
  return out_dir


def run_refiner_training(
  texts: Sequence[str],
  cfg: RefinerTrainConfig,
  out_dir: str | Path,
  *,
  tokenizer: str | Path | None = None,
  progress: bool = True,
) -> dict[str, Any]:
  """Builds teacher pairs from ``texts``, trains the refiner, exports it to ``out_dir/model``; returns a summary
  (pair counts, losses). ``tokenizer``: a tokenizer.json / dir / .gguf with a chat template (default: SmolLM2's,
  from the offline GGUF). ``out_dir/train`` holds checkpoints and ``metrics.jsonl`` (resumable)."""
  import jax

  from tokensift.core import paths
  from tokensift.core import hf_tokenizer
  from tokensift.models import llama
  from tokensift.models.partitioning import make_mesh
  from tokensift.refine.model_programmer import ModelProgrammer

  out_dir = Path(out_dir)
  files = hf_tokenizer.tokenizer_files(tokenizer or paths.smollm2_gguf())
  from tokenizers import Tokenizer

  vocab_size = Tokenizer.from_file(str(files.tokenizer_json)).get_vocab_size(with_added_tokens=True)
  lcfg = llama_config(cfg.model, vocab_size)
  module = llama.Llama(lcfg)
  mesh = make_mesh(devices=jax.devices()[:1])
  params = init_params(lcfg, cfg.seed)
  prompter = ModelProgrammer(module, params, files, config=programmer_config(cfg), mesh=mesh, name="refiner-prompts")
  pairs, counts = build_pairs(texts, prompter, cfg)
  lengths = [len(p.prompt) + len(p.target) for p in pairs]
  counts["pairs_too_long"] = sum(bucket_of(n, cfg.buckets) is None for n in lengths)
  counts["pair_tokens"] = int(sum(lengths))
  params, summary = train_refiner(pairs, cfg, vocab_size, out_dir / "train", params=params, progress=progress)
  export_hf(out_dir / "model", lcfg, params, files)
  return {**counts, **summary, "model_dir": str(out_dir / "model")}
