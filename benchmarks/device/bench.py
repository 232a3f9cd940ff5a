"""One table of tokensift's figures on an accelerator (DESIGN §8, the row "on an accelerator"), each against its
peer measured in the same run. Random weights at the real models' shapes (no checkpoint travels), real C4
documents from the sample data. ``benchmarks/device/run.sh`` installs the package and runs this; ``--smoke`` runs
the same code on the CPU with tiny shapes (tests/test_device_bench.py).

Rows (each measurement is timed for a budget of seconds after its warm-up; the median call is reported unless
said otherwise):

- ``matmul``: a plain jitted bf16 ``[n, n] x [n, n]`` matmul, FLOP/s of its fastest call: the roofline that the
  other rows' fractions divide by.
- ``askllm_llama``, ``askllm_t5``: ASK-LLM docs/s, tokensift's scorer (``selection.askllm_scorer``, bf16) against
  HF transformers (torch, bf16, the same weights copied across, batches of the same size in input order padded
  to the longest, one forward: ``model(ids, attention_mask).logits``) on the same prompt ids: those of the C4
  documents long enough to fill the 512-token context. Scorers: TinyLlama-1.1B's shape
  (gin_configs/models/llama_1b.gin, with the C4 SentencePiece vocabulary of 32768 that tokenizes the prompts)
  and FLAN-T5-Large's (vocabulary 32768 for the same reason). The fraction is the scorer's model FLOP/s
  (``flops.py``) over the matmul's; the note gives tokensift's docs/s with prompt building (tokenization,
  truncation) included.
- ``kernel_sums``: DENSITY's exact Gaussian kernel sums (``selection.density_kernels.kernel_sums(x, x)``, the
  general path, ``2 N^2 d`` FLOPs) against a plain jitted float32 ``x @ x.T`` of the same shape.
- ``slm_step``: the embedded trainer's (``trainer.steps.Steps``) Rho-1 SLM train step over its plain
  cross-entropy step, same network (gin_configs/models/llama_1b.gin), AdamW, packed C4 batch with reference
  losses of a small random reference Llama; the two steps timed alternately.
- ``trainer``: that cross-entropy step's tokens/s (all positions of the packed batch, as the trainer counts them)
  and MFU: model FLOP/s (``6 N + 12 L T H`` per token) over the measured bf16 matmul FLOP/s.
- ``embed``: the embed job's ``Embedder`` (``selection.embed_job``) with all-MiniLM-L6-v2's shape (random
  weights written as an HF checkpoint with MiniLM's tokenizer), docs/s on C4 documents (tokenization included).

  python benchmarks/device/bench.py [--smoke] [--json out.json] [--deadline_s 450] [--only ROW ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # flops.py here; the shared benchmark helpers in benchmarks/

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # torch shares the GPU with JAX in this process

import bench_askllm  # noqa: E402  (benchmarks/)
import bench_kernel_sums  # noqa: E402
import bench_llama_forward  # noqa: E402
import bench_slm_step  # noqa: E402
import bench_t5_forward  # noqa: E402
import flops  # noqa: E402  (benchmarks/device/)
import workloads  # noqa: E402
from timing import budgeted  # noqa: E402


@dataclasses.dataclass(frozen=True)
class Profile:
  """Shapes and time budgets of one run (``FULL`` on one H100/H200, ``SMOKE`` on a CPU)."""

  name: str
  matmul: int  # n of the bf16 [n, n] x [n, n] roofline matmul
  texts: int  # C4 sample documents read (of 1000)
  length: int  # ASK-LLM prompt tokens
  docs: int  # ASK-LLM prompts per timed call
  rows: int  # ASK-LLM prompts per batch (tokensift and HF alike)
  scorer_gin: tuple[str, ...]  # the decoder-only scorer's shape (gin files + bindings), vocabulary replaced
  t5: dict  # HF T5Config fields of the encoder-decoder scorer
  kernel_n: int
  kernel_d: int
  kernel_tiles: tuple[int, int]  # query_block x key_block also timed (beside KernelConfig's default tiles)
  train_gin: tuple[str, ...]  # the trained network (gin files + bindings)
  train_batch: int
  train_length: int
  embed_overrides: dict  # on all-MiniLM-L6-v2's config.json
  embed_docs: int
  budget_s: float  # timed seconds per measurement
  deadline_s: float  # rows that would start later than this (minus their estimate) are skipped
  estimate_s: dict  # rough seconds per row (compiles included), for the deadline


C4_VOCAB = 32768  # the C4 SentencePiece model that tokenizes every prompt and training document here

FULL = Profile(
  name="full",
  matmul=8192,
  texts=1000,
  length=512,
  docs=256,
  rows=32,
  scorer_gin=(
    "gin_configs/models/llama_1b.gin",
    "llama.LlamaConfig.remat = False",
    "llama.LlamaConfig.param_dtype = 'bfloat16'",
  ),
  t5=dict(bench_t5_forward.FLAN_T5_LARGE, vocab_size=C4_VOCAB),
  kernel_n=32768,
  kernel_d=384,
  kernel_tiles=(2048, 4096),
  train_gin=("gin_configs/models/llama_1b.gin",),
  train_batch=4,
  train_length=2048,
  embed_overrides={},
  embed_docs=4096,
  budget_s=6.0,
  deadline_s=450.0,
  estimate_s=dict(matmul=5, askllm_llama=70, askllm_t5=70, kernel_sums=20, slm_step=200, embed=30),
)

SMOKE = Profile(
  name="smoke",
  matmul=256,
  texts=100,
  length=128,
  docs=16,
  rows=8,
  scorer_gin=(
    "gin_configs/models/llama_tiny.gin",
    "llama.LlamaConfig.dtype = 'bfloat16'",
    "llama.LlamaConfig.param_dtype = 'bfloat16'",
    "llama.LlamaConfig.tie_word_embeddings = False",
  ),
  t5=dict(
    bench_t5_forward.FLAN_T5_SMALL,
    vocab_size=C4_VOCAB,
    d_model=32,
    d_kv=8,
    d_ff=64,
    num_layers=2,
    num_decoder_layers=2,
    num_heads=4,
  ),
  kernel_n=2048,
  kernel_d=384,
  kernel_tiles=(512, 512),
  train_gin=("gin_configs/models/llama_tiny.gin", f"llama.LlamaConfig.vocab_size = {C4_VOCAB}"),
  train_batch=2,
  train_length=128,
  embed_overrides=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64),
  embed_docs=32,
  budget_s=0.3,
  deadline_s=600.0,
  estimate_s={},
)


@dataclasses.dataclass
class Row:
  """One line of the table: ``ours`` (in ``unit``), its ``peer`` in the same unit, ``ratio`` (as the target reads
  it), ``fraction`` of the bf16 matmul roofline (MFU for the trainer), the DESIGN target, a note, the row's
  wall seconds and, for ASK-LLM, the agreement of the two sides' scores."""

  key: str
  what: str
  unit: str
  ours: float = math.nan
  peer: float | None = None
  ratio: float | None = None
  fraction: float | None = None
  target: str = ""
  note: str = ""
  seconds: float = 0.0
  agreement: float | None = None  # ASK-LLM: max |log P(yes) tokensift - log P(yes) HF| over the prompts


# --------------------------------------------------------------------------------------------------- helpers


def free_torch(device: str) -> None:
  import gc

  import torch

  gc.collect()
  if device.startswith("cuda"):
    torch.cuda.empty_cache()


def median(times: list[float]) -> float:
  return statistics.median(times)


# ------------------------------------------------------------------------------------------------------ rows


def row_matmul(p: Profile, ctx: dict) -> Row:
  import jax
  import jax.numpy as jnp

  n = p.matmul
  ka, kb = jax.random.split(jax.random.PRNGKey(0))
  a = jax.random.normal(ka, (n, n), jnp.bfloat16)
  b = jax.random.normal(kb, (n, n), jnp.bfloat16)
  mm = jax.jit(jnp.matmul)
  times = budgeted(lambda: mm(a, b).block_until_ready(), p.budget_s / 2, min_repeats=3)
  best = flops.matmul_flops(n, n, n) / min(times)
  ctx["roofline"] = best
  return Row(
    "matmul",
    f"bf16 matmul [{n},{n}]x[{n},{n}] (jit), fastest of {len(times)}",
    "TFLOP/s",
    ours=best / 1e12,
    note=f"median {flops.matmul_flops(n, n, n) / median(times) / 1e12:.1f} TFLOP/s",
  )


def _askllm(p: Profile, ctx: dict, key: str, what: str, arch: str, module, params, tok, fmt, hf_fn, doc_flops) -> Row:
  """Times tokensift's scorer and ``hf_fn(prompt ids, batch) -> log P(yes)`` on the same prompts: those of the
  C4 documents cut to fit the context (about ``p.length`` tokens each), repeated in order up to ``p.docs``."""
  import numpy as np

  from tokensift.selection import askllm_scorer as sc

  scorer = sc.AskLlmScorer(
    arch,
    module,
    params,
    tok,
    fmt,
    batch=sc.BatchConfig(tokens_per_batch=p.rows * p.length, max_batch=p.rows, buckets=(p.length,)),
  )
  texts = bench_askllm.c4_docs(p.texts)
  filled = [(t, q.ids) for t, q in zip(texts, scorer.prompts(texts)) if q.truncated]
  if not filled:
    raise ValueError(f"no C4 document fills a {p.length}-token prompt")
  docs = [filled[i % len(filled)][0] for i in range(p.docs)]
  prompts = [filled[i % len(filled)][1] for i in range(p.docs)]
  t0 = time.perf_counter()
  scorer.warmup([len(q) for q in prompts])
  compile_s = time.perf_counter() - t0
  ours_t = budgeted(lambda: scorer.score_ids(prompts), p.budget_s)
  t0 = time.perf_counter()
  scorer.score(docs)  # end to end: prompt building (tokenization, truncation) included
  e2e = time.perf_counter() - t0
  ours = scorer.score_ids(prompts)["logp_yes"]
  theirs = hf_fn(prompts[: p.rows], p.rows)  # warm-up
  hf_t = budgeted(lambda: hf_fn(prompts, p.rows), p.budget_s, warmup=False)
  theirs = hf_fn(prompts, p.rows)
  diff = float(np.max(np.abs(ours - theirs)))
  work = sum(doc_flops(len(q)) for q in prompts)
  tokens = sum(len(q) for q in prompts)
  docs_s, hf_docs_s = p.docs / median(ours_t), p.docs / median(hf_t)
  scorer = None  # frees the model now (not `del`: the timed lambda above closes over it)
  return Row(
    key,
    what,
    "docs/s",
    ours=docs_s,
    peer=hf_docs_s,
    ratio=docs_s / hf_docs_s,
    fraction=work / median(ours_t) / ctx["roofline"],
    target=">= 2x HF, >= 0.5 roofline",
    agreement=diff,
    note=f"{p.docs} prompts, {tokens / p.docs:.0f} tokens each, batch {p.rows}; with prompt building "
    f"{p.docs / e2e:.1f} docs/s; compile {compile_s:.0f} s; max |log P(yes) diff| {diff:.1e}",
  )


def row_askllm_llama(p: Profile, ctx: dict) -> Row:
  import torch

  from tokensift.models import llama
  from tokensift.selection import askllm_prompt as ap

  cfg = dataclasses.replace(workloads.gin_config(p.scorer_gin), vocab_size=C4_VOCAB)
  params = workloads.random_llama_params(cfg)
  hf = bench_llama_forward.hf_llama(cfg, params, torch.bfloat16, ctx["torch_device"])
  tok = ap.SentencePiecePromptTokenizer.from_file(str(ctx["c4_model"]))
  # TinyLlama-1.1B-Chat's (Zephyr) template around the user turn, as plain text of this tokenizer
  fmt = ap.ChatFormat(max_length=p.length, chat_prefix="<|user|>\n", chat_suffix="</s>\n<|assistant|>\n")
  yes = ap.answer_ids(tok).yes
  device = ctx["torch_device"]

  def hf_fn(prompts, batch):
    return bench_askllm.hf_decoder_only_logp_yes(hf, prompts, batch, yes, best_path=False, device=device)

  what = (
    f"ASK-LLM, Llama {cfg.num_layers}x{cfg.hidden_size} (TinyLlama-1.1B shape), {p.length} tokens, bf16"
    if p.name == "full"
    else "ASK-LLM, tiny Llama, bf16"
  )
  try:
    return _askllm(
      p,
      ctx,
      "askllm_llama",
      what,
      "decoder_only",
      llama.Llama(cfg),
      params,
      tok,
      fmt,
      hf_fn,
      lambda n: flops.llama_score_flops(cfg, n),
    )
  finally:
    hf = None  # frees the torch model before free_torch (not `del`: hf_fn closes over it)
    free_torch(device)


def row_askllm_t5(p: Profile, ctx: dict) -> Row:
  import torch

  from tokensift.selection import askllm_prompt as ap

  device = ctx["torch_device"]
  hf, config, params, module = bench_t5_forward.random_flan_t5(p.t5, "bfloat16", device=device)
  hf = hf.to(torch.bfloat16)
  tok = ap.SentencePiecePromptTokenizer.from_file(str(ctx["c4_model"]))
  fmt = ap.ChatFormat(max_length=p.length, append_eos=True)
  yes = ap.answer_ids(tok).yes

  def hf_fn(prompts, batch):
    return bench_askllm.hf_t5_logp_yes(hf, prompts, batch, yes, device=device)

  try:
    what = (
      f"ASK-LLM, T5 {config.num_encoder_layers}+{config.num_decoder_layers}x{config.d_model} (FLAN-T5-Large "
      f"shape), {p.length} tokens, bf16"
      if p.name == "full"
      else "ASK-LLM, tiny T5, bf16"
    )
    return _askllm(
      p,
      ctx,
      "askllm_t5",
      what,
      "encoder_decoder",
      module,
      params,
      tok,
      fmt,
      hf_fn,
      lambda n: flops.t5_score_flops(config, n),
    )
  finally:
    hf = None  # frees the torch model before free_torch (not `del`: hf_fn closes over it)
    free_torch(device)


def row_kernel_sums(p: Profile, ctx: dict) -> Row:
  import jax
  import jax.numpy as jnp

  from tokensift.selection import density_kernels as dk

  n, d = p.kernel_n, p.kernel_d
  x = bench_kernel_sums.synthetic_embeddings(n, d)
  cfg = dk.KernelConfig(bandwidth=dk.bandwidth_heuristic(x, "median"))
  work = flops.matmul_flops(n, d, n)
  general = budgeted(lambda: dk.kernel_sums(x, x, config=cfg), p.budget_s)
  symmetric = budgeted(lambda: dk.kernel_sums(x, config=cfg), p.budget_s / 2)
  qb, kb = p.kernel_tiles
  tiles = dataclasses.replace(cfg, query_block=qb, key_block=kb)
  other = budgeted(lambda: dk.kernel_sums(x, x, config=tiles), p.budget_s / 2)
  xj = jnp.asarray(x)
  mm = jax.jit(lambda a, b: a @ b.T)
  peer = budgeted(lambda: mm(xj, xj).block_until_ready(), p.budget_s / 2)
  ours, theirs = work / median(general) / 1e12, work / median(peer) / 1e12
  return Row(
    "kernel_sums",
    f"DENSITY kernel sums N={n} d={d} (float32, general path)",
    "TFLOP/s",
    ours=ours,
    peer=theirs,
    ratio=ours / theirs,
    target=">= 0.6 of matmul",
    note=f"peer: jitted x @ x.T; default tiles {cfg.query_block}x{cfg.key_block}; tiles {qb}x{kb}: "
    f"{work / median(other) / 1e12:.3g} TFLOP/s; self density (symmetric path, half the FLOPs) "
    f"{median(symmetric) * 1e3:.1f} ms vs general {median(general) * 1e3:.1f} ms",
  )


def rows_slm_trainer(p: Profile, ctx: dict) -> list[Row]:
  from tokensift.models import llama

  cfg = workloads.gin_config(p.train_gin)
  batch = workloads.train_batch(bench_askllm.c4_docs(p.texts), cfg.vocab_size, p.train_batch, p.train_length)
  runners = bench_slm_step.step_runners(llama.Llama(cfg), batch, 0.6, cost=False)
  times = bench_slm_step.time_alternately(runners, repeats=1000, budget_s=2 * p.budget_s)
  clm, slm = median(times["clm"]), median(times["slm"])
  tokens = p.train_batch * p.train_length
  per_token = flops.llama_train_flops_per_token(cfg, p.train_length)
  shape = f"{p.train_batch}x{p.train_length} packed C4 tokens"
  compile_note = f"compile clm {runners['clm'][3]:.0f} s, slm {runners['slm'][3]:.0f} s"
  slm_row = Row(
    "slm_step",
    f"SLM step / CE step, Llama {cfg.num_layers}x{cfg.hidden_size}, {shape}",
    "ms",
    ours=slm * 1e3,
    peer=clm * 1e3,
    ratio=slm / clm,
    target="<= 1.05",
    note=f"k = 60%, {len(times['clm'])} rounds; {compile_note}",
  )
  trainer_row = Row(
    "trainer",
    f"embedded trainer CE step, Llama {cfg.num_layers}x{cfg.hidden_size} ({cfg.dtype}, remat {cfg.remat}), {shape}",
    "tokens/s",
    ours=tokens / clm,
    fraction=tokens / clm * per_token / ctx["roofline"],
    target="MFU reported",
    note=f"MFU = {per_token / 1e9:.2f} GFLOP/token (6N + 12LTH) x tokens/s / matmul FLOP/s; SLM step "
    f"{tokens / slm:,.0f} tokens/s",
  )
  del runners
  return [slm_row, trainer_row]


def row_embed(p: Profile, ctx: dict) -> Row:
  import torch
  import transformers

  from tokensift.selection import embed_job

  src = ctx["minilm_dir"]
  hf_cfg = json.loads((src / "config.json").read_text())
  hf_cfg.update(p.embed_overrides)
  texts = bench_askllm.c4_docs(p.texts)
  texts = [texts[i % len(texts)] for i in range(p.embed_docs)]
  with tempfile.TemporaryDirectory() as tmp:
    torch.manual_seed(0)
    transformers.BertModel(transformers.BertConfig(**hf_cfg)).save_pretrained(tmp)
    shutil.copy(src / "tokenizer.json", Path(tmp) / "tokenizer.json")
    (Path(tmp) / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256}))
    embedder = embed_job.Embedder(embed_job.EmbedJobConfig(model=tmp, dtype="bfloat16"))
  t0 = time.perf_counter()
  embedder.embed(texts)  # compiles the bucket shapes
  compile_s = time.perf_counter() - t0
  times = budgeted(lambda: embedder.embed(texts), p.budget_s, warmup=False)
  tokens = sum(len(t) for t in embedder.tokenize(texts)[0])
  docs_s = p.embed_docs / median(times)
  shape = (
    f"all-MiniLM-L6-v2 shape ({hf_cfg['num_hidden_layers']}x{hf_cfg['hidden_size']})"
    if p.name == "full"
    else "tiny BERT"
  )
  return Row(
    "embed",
    f"embed job, {shape}, <= 256 tokens, bf16",
    "docs/s",
    ours=docs_s,
    note=f"{p.embed_docs} C4 docs, {tokens / p.embed_docs:.0f} tokens each on average, "
    f"{tokens / median(times):,.0f} tokens/s, tokenization included; first call {compile_s:.0f} s",
  )


# In order of priority: a row that would end after the deadline is skipped, so the cheap embed row goes last.
ROWS = [
  ("matmul", row_matmul),
  ("askllm_llama", row_askllm_llama),
  ("askllm_t5", row_askllm_t5),
  ("kernel_sums", row_kernel_sums),
  ("slm_step", rows_slm_trainer),
  ("embed", row_embed),
]


# -------------------------------------------------------------------------------------------------- output


def _fmt(v: float | None, spec: str = ".3g") -> str:
  if v is None:
    return "-"
  return "nan" if not math.isfinite(v) else format(v, spec)


def render(rows: list[Row], header: str) -> str:
  cols = ["row", "what", "tokensift", "peer", "unit", "ratio", "roofline", "target"]
  table = [
    [r.key, r.what, _fmt(r.ours), _fmt(r.peer), r.unit, _fmt(r.ratio, ".2f"), _fmt(r.fraction, ".2f"), r.target]
    for r in rows
  ]
  widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
  line = lambda cells: " | ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
  out = [header, line(cols), "-+-".join("-" * w for w in widths)] + [line(t) for t in table]
  out += ["", "notes:"] + [f"  {r.key}: {r.note} ({r.seconds:.0f} s)" for r in rows]
  out.append(
    "ratio: tokensift / peer (slm_step: SLM / CE step time); roofline: model FLOP/s over the bf16 matmul "
    "row's (trainer: MFU)"
  )
  return "\n".join(out)


def write_json(path: str | None, profile: Profile, header: str, rows: list[Row], total: float) -> dict:
  """The run as a dict (written to ``path`` when given): profile, header, seconds, whether TensorFlow or seqio
  got imported, the rows."""
  result = {
    "profile": profile.name,
    "header": header,
    "total_s": total,
    "tensorflow_imported": sys.modules.get("tensorflow") is not None,
    "seqio_imported": sys.modules.get("seqio") is not None,
    "rows": [dataclasses.asdict(r) for r in rows],
  }
  if path:
    Path(path).write_text(json.dumps(result, indent=1))
  return result


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  ap.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (CI)")
  ap.add_argument("--json", default=None, help="also write the rows here")
  ap.add_argument(
    "--deadline_s", type=float, default=None, help="skip rows that would end later (default: the profile's)"
  )
  ap.add_argument("--only", action="append", choices=[k for k, _ in ROWS], help="run these rows (and matmul)")
  args = ap.parse_args(argv)
  start = time.perf_counter()
  profile = SMOKE if args.smoke else FULL
  deadline = args.deadline_s if args.deadline_s is not None else profile.deadline_s

  import jax
  import torch
  import transformers

  from tokensift.core import paths

  platform = jax.devices()[0].platform
  if not args.smoke and platform == "cpu":
    print("bench: JAX sees no accelerator (run with --smoke for the CPU)", file=sys.stderr)
    return 2
  torch_device = "cuda" if (not args.smoke and torch.cuda.is_available()) else "cpu"
  if torch_device == "cpu":
    torch.set_num_threads(os.cpu_count() or 1)
  minilm = paths.data_dir() / "minilm"
  ctx = {
    "torch_device": torch_device,
    "c4_model": paths.data_path("tokenizers", "c4-32768.model"),
    "minilm_dir": minilm if (minilm / "tokenizer.json").exists() else paths.minilm_dir(),
  }
  header = (
    f"tokensift device bench ({profile.name}): jax {jax.__version__} on {jax.devices()[0].device_kind} "
    f"x{jax.device_count()}, torch {torch.__version__} on {torch_device}"
    f"{' (' + torch.cuda.get_device_name() + ')' if torch_device == 'cuda' else ''}, transformers "
    f"{transformers.__version__}"
  )
  print(header, flush=True)
  rows: list[Row] = []
  for key, fn in ROWS:
    if args.only and key != "matmul" and key not in args.only:
      continue
    t0 = time.perf_counter()
    if t0 - start + profile.estimate_s.get(key, 0) > deadline:
      skipped = [
        Row(
          key,
          "skipped",
          "",
          note=f"not started: {t0 - start:.0f} s gone, about "
          f"{profile.estimate_s.get(key, 0)} s needed, deadline {deadline:.0f} s",
        )
      ]
      rows += skipped + ([Row("trainer", "skipped", "", note="with slm_step")] if key == "slm_step" else [])
      continue
    try:
      got = fn(profile, ctx)
    except Exception as e:  # noqa: BLE001  (one row's failure must not lose the others)
      traceback.print_exc()
      got = [Row(key, "failed", "", note=f"{type(e).__name__}: {str(e)[:300]}")]
      if key == "slm_step":
        got.append(Row("trainer", "failed", "", note="with slm_step"))
      if key == "matmul":
        ctx["roofline"] = math.nan
    got = got if isinstance(got, list) else [got]
    for r in got:
      r.seconds = time.perf_counter() - t0
      print(
        f"[{r.key}] {_fmt(r.ours)} {r.unit}  peer {_fmt(r.peer)}  ratio {_fmt(r.ratio, '.2f')}  roofline "
        f"{_fmt(r.fraction, '.2f')}  ({r.seconds:.0f} s)",
        flush=True,
      )
    rows += got
    if args.json:  # after every row: a run stopped at its time limit keeps the rows it finished
      write_json(args.json, profile, header, rows, time.perf_counter() - start)
  total = time.perf_counter() - start
  result = write_json(args.json, profile, header, rows, total)
  print()
  print(
    render(
      rows,
      f"{header}; total {total:.0f} s; tensorflow imported: {result['tensorflow_imported']}, "
      f"seqio imported: {result['seqio_imported']}",
    )
  )
  finite = all(math.isfinite(r.ours) for r in rows)
  return 0 if finite else 1


if __name__ == "__main__":
  sys.exit(main())
