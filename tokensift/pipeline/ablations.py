"""Seeded training ablations (DESIGN §12): tiny decoders trained on each data set (the contaminated pool, the
refined pool, a random subset, each selection method's subset, the combination), CLM and Rho-1 SLM, every seed
of a run vmapped into one program; validation cross-entropy on clean held-out documents.

Every run trains on the training core (``trainer.core``: orbax checkpoints, clu metrics, resume with the same
losses) in ``work_dir/{run}``, with its own step function: unlike the embedded trainer's (``trainer.loop``: one
seed per call through seqio tasks with SmolLM2's 49152-way softmax, ~0.4 cpu s per 512-token step), every run
here has the same shapes, so one compiled step (the one-seed step vmapped over seeds, ``core.over_seeds``) serves
all runs (``workers`` of them at a time), over a **compact vocabulary**: by default the characters of the text
(``vocabulary='chars'``), else SmolLM2 ids; the most frequent ``max_vocab`` - 3 of them, the rest one OOV id (0 =
padding, 1 = OOV, 2 = document separator). On ~170 documents and 2 CPU cores the models are limited by training
compute (~10^5 positions each), and over characters that compute takes them several times further past the
unigram level per unit of text than over SmolLM2 ids (gin_configs/pipeline/default.gin has the figures). Every run
is evaluated on the same held-out text in the same compact vocabulary, so their cross-entropies compare like with
like (not with full-vocabulary figures).
The model (``models.llama.Llama``) and the losses (``rho1.selective_loss``) are the package's own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from tokensift.pipeline.ablation_data import (
  OOV,
  UNITS,
  pack,
  positions_budget,
  unigram_ce,
  unit_docs,
  vocabulary_mapping,
)

if TYPE_CHECKING:
  import jax

VOCABULARIES = ("chars", "tokens")


@dataclasses.dataclass(frozen=True)
class AblationConfig:
  """Tiny decoders for the ablations. rate: percent of the refined pool kept by each selection run (the
  combination keeps the select stage's list). perplexity_mode: which perplexity-filtering variant is trained
  (all three are measured for detection). runs: names in ``RUNS``. vocabulary: what the models predict:
  'chars' (the characters of the text, the ``max_vocab`` - 3 most frequent of them, the rest one OOV id) or
  'tokens' (SmolLM2 ids, likewise); seq_len counts those units. doc_tokens: the first SmolLM2 tokens of each
  training document (scored by the reference model for SLM and perplexity filtering, then trained on).
  validation_docs / validation_doc_tokens: the clean held-out documents (the task's validation split) every
  run is evaluated on, and how many tokens of each. tie_embeddings: share the input embedding and the output
  projection (False: a separate [hidden, vocab] output matrix; measured better for the character models, see
  ``gin_configs/pipeline/default.gin``). workers: runs trained at the same time (threads; XLA's CPU step for
  these small shapes keeps about one core busy).

  The training budget (``ablation_data.positions_budget``): every run trains ``steps * batch_size * seq_len`` positions.
  ``steps`` None (the default) fixes it by the data-abundant rule, before any model trains: the largest whole
  number of steps that is at most ``pool_epochs`` epochs of the whole (contaminated) pool and at most
  ``selection_epochs`` epochs of the smallest selection (random, ASK-LLM, perplexity, DENSITY, combination), so
  that data, not compute, is what is plentiful; an int sets it directly (the report then states the epochs)."""

  enabled: bool = True
  seeds: int = 3
  rate: float = 50.0
  perplexity_mode: str = "low"
  hidden_size: int = 32
  intermediate_size: int = 128
  num_layers: int = 1
  num_heads: int = 4
  num_kv_heads: int = 2
  tie_embeddings: bool = False
  seq_len: int = 64
  batch_size: int = 16
  steps: int | None = None
  pool_epochs: float = 1.0
  selection_epochs: float = 2.0
  eval_every: int = 200
  learning_rate: float = 1e-2
  warmup_steps: int = 20
  slm_ratio: float = 0.6
  max_vocab: int = 256
  vocabulary: str = "chars"
  doc_tokens: int = 192
  validation_docs: int = 64
  validation_doc_tokens: int = 128
  workers: int = 2
  runs: tuple[str, ...] = (
    "clm_contaminated",
    "slm_contaminated",
    "clm_refined_pool",
    "clm_random",
    "clm_askllm",
    "clm_perplexity",
    "clm_density",
    "clm_combination",
    "slm_combination",
  )

  def __post_init__(self):
    bad = [r for r in self.runs if r not in RUNS]
    if bad:
      raise ValueError(f"AblationConfig.runs: unknown {bad}; the runs are {list(RUNS)}")
    if self.seeds < 2:
      raise ValueError(f"AblationConfig.seeds={self.seeds}: need >= 2 for a spread (3 or more recommended)")
    if self.max_vocab < 8 or self.seq_len < 8 or (self.steps is not None and self.steps < 1) or self.eval_every < 1:
      raise ValueError(
        f"AblationConfig max_vocab={self.max_vocab}, seq_len={self.seq_len}, steps={self.steps}, "
        f"eval_every={self.eval_every} are too small"
      )
    if self.vocabulary not in VOCABULARIES:
      raise ValueError(f"AblationConfig.vocabulary={self.vocabulary!r}: use one of {VOCABULARIES}")
    if not (self.pool_epochs > 0 and self.selection_epochs > 0):
      raise ValueError(
        f"AblationConfig pool_epochs={self.pool_epochs}, selection_epochs={self.selection_epochs} must be > 0"
      )
    if self.doc_tokens < 1 or self.validation_docs < 1 or self.validation_doc_tokens < 1 or self.workers < 1:
      raise ValueError(
        f"AblationConfig doc_tokens={self.doc_tokens}, validation_docs={self.validation_docs}, "
        f"validation_doc_tokens={self.validation_doc_tokens}, workers={self.workers} must be >= 1"
      )


RUNS = {  # name -> (loss, data set, what it trains on; {rate}, {mode}: AblationConfig)
  "clm_contaminated": ("clm", "contaminated", "every document of the known-answer corpus, raw (junk included)"),
  "slm_contaminated": ("slm", "contaminated", "the same, Rho-1 SLM"),
  "clm_refined_pool": ("clm", "refined_pool", "every document the ProX refiner kept, refined text"),
  "clm_random": ("clm", "random", "a random {rate:g}% of the refined pool"),
  "clm_askllm": ("clm", "askllm", "the top {rate:g}% of the refined pool by ASK-LLM score"),
  "clm_perplexity": ("clm", "perplexity", "the {mode}-perplexity {rate:g}% of the refined pool (reference model)"),
  "clm_density": ("clm", "density", "a DENSITY inverse-propensity sample of {rate:g}% of the refined pool"),
  "clm_combination": ("clm", "combination", "the select stage's list (ASK-LLM pool, then DENSITY)"),
  "slm_combination": ("slm", "combination", "the same, Rho-1 SLM"),
}


# --------------------------------------------------------------------------------------------- training

COUNTS = ("noise_tokens", "noise_selected", "clean_tokens", "clean_selected")  # SLM selection, cumulative


def counting(step_fn):
  """``step_fn`` that also adds its SLM selection counts (metrics ``COUNTS``) into ``state["counts"]`` (int32,
  checkpointed with the state) and reports the running totals: the counts between two logged steps are the
  difference of their totals, the same after a resume."""
  import jax.numpy as jnp

  def step(state, batch):
    new, metrics = step_fn(state, batch)
    new["counts"] = {k: state["counts"][k] + metrics[k].astype(jnp.int32) for k in COUNTS}
    return new, dict(metrics, **new["counts"])

  return step


class AblationSteps:
  """The one-seed model, loss and optimizer of the ablations; its train step (the core's optax step,
  ``trainer.core.make_step``, vmapped over seeds with ``core.over_seeds``), init and eval compiled once per loss
  kind and shared by every run."""

  def __init__(self, cfg: AblationConfig, vocab: int):
    import jax
    import optax

    from tokensift.models import llama
    from tokensift.trainer import core

    if cfg.steps is None:
      raise ValueError("AblationSteps needs AblationConfig.steps set: resolve it with positions_budget first")
    self.cfg = cfg
    self.net = llama.Llama(
      llama.LlamaConfig(
        vocab_size=vocab,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_layers=cfg.num_layers,
        num_heads=cfg.num_heads,
        num_kv_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.seq_len,
        tie_word_embeddings=cfg.tie_embeddings,
      )
    )
    sched = optax.warmup_cosine_decay_schedule(
      0.0, cfg.learning_rate, cfg.warmup_steps, cfg.steps, cfg.learning_rate * 0.1
    )
    self.opt = optax.adamw(sched, b2=0.98, weight_decay=0.01)
    self._init = jax.jit(jax.vmap(self._init_one))
    clm = core.make_step(lambda p, b, rng: self._loss(p, b, "clm"), self.opt)
    slm = counting(core.make_step(lambda p, b, rng: self._loss(p, b, "slm"), self.opt))
    self.steps = {"clm": jax.jit(core.over_seeds(clm)), "slm": jax.jit(core.over_seeds(slm))}
    self._eval = jax.jit(jax.vmap(self._eval_one, in_axes=(0, None)))
    self._unit_ce = jax.jit(self._unit_ce_one)

  def param_count(self) -> int:
    """Parameters of one model (shapes only; nothing is computed)."""
    import jax

    state = jax.eval_shape(self._init_one, jax.random.PRNGKey(0))
    return int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(state["params"])))

  def _init_one(self, key):
    import flax.linen as nn
    import jax.numpy as jnp

    from tokensift.trainer import core

    params = nn.unbox(self.net.init(key, jnp.ones((1, self.cfg.seq_len), jnp.int32))["params"])
    return core.new_state(params, self.opt)

  def init_state(self, kind: str, seeds: Sequence[int]) -> dict[str, Any]:
    """The train states of ``seeds`` stacked on a leading axis (+ zero SLM selection counts for 'slm')."""
    import jax
    import jax.numpy as jnp

    state = self._init(jnp.stack([jax.random.PRNGKey(int(x)) for x in seeds]))
    if kind == "slm":
      state["counts"] = {k: jnp.zeros(len(seeds), jnp.int32) for k in COUNTS}
    return state

  def _logits(self, params, tokens) -> jax.Array:
    return self.net.apply({"params": params}, tokens[:, :-1])  # pyright: ignore[reportReturnType]  (apply without mutable: the output only)

  def _loss(self, params, batch, kind):
    """One seed's loss on rows [batch, seq_len + 1]; metrics ``ce`` (all weighted targets) and, for SLM, the
    noise-span and clean tokens its selection took (``COUNTS``)."""
    import jax
    import jax.numpy as jnp

    from tokensift.rho1 import selective_loss as sl

    targets, w = batch["tokens"][:, 1:], batch["weight"][:, 1:]
    ref, noise = batch["ref"][:, 1:], batch["noise"][:, 1:]
    logits = self._logits(params, batch["tokens"])
    if kind == "slm":
      loss, metrics = sl.selective_cross_entropy(logits, targets, w, ref, self.cfg.slm_ratio)
    else:
      loss, metrics = sl.weighted_cross_entropy(logits, targets, w)
    stats = {"ce": metrics["ce_unmasked"]}
    if kind == "slm":  # the tokens this step's SLM loss selected: noise-span tokens vs clean tokens
      ce, _ = sl.token_cross_entropy(jax.lax.stop_gradient(logits), targets)
      mask = sl.select_tokens(ce - ref, w, self.cfg.slm_ratio).astype(jnp.float32)
      is_noise, is_clean = (noise > 0) & (w > 0), (noise == 0) & (w > 0)
      stats.update(
        noise_tokens=jnp.sum(is_noise),
        noise_selected=jnp.sum(mask * is_noise),
        clean_tokens=jnp.sum(is_clean),
        clean_selected=jnp.sum(mask * is_clean),
      )
    return loss, stats

  def _unit_ce_one(self, params, tokens):
    from tokensift.rho1 import selective_loss as sl

    ce, _ = sl.token_cross_entropy(self._logits(params, tokens), tokens[:, 1:])
    return ce

  def unit_losses(self, params, tokens: np.ndarray, chunk: int = 256) -> np.ndarray:
    """One model's loss on every target of packed rows: ``params`` unstacked (one seed), ``tokens`` int32
    [rows, seq_len + 1] -> float32 [rows, seq_len + 1], column 0 zero (it is no target) and column ``t`` the
    cross-entropy of ``tokens[:, t]`` given ``tokens[:, :t]``: the reference losses Rho-1 subtracts, on the very
    rows and contexts the models train on. Rows go through in chunks of ``chunk`` (the last one padded: one
    compiled shape)."""
    n = tokens.shape[0]
    out = np.zeros(tokens.shape, np.float32)
    for a in range(0, n, chunk):
      part = tokens[a : a + chunk]
      pad = np.zeros((chunk - part.shape[0], tokens.shape[1]), tokens.dtype)
      ce = np.asarray(self._unit_ce(params, np.concatenate([part, pad])))
      out[a : a + part.shape[0], 1:] = ce[: part.shape[0]]
    return out

  def _eval_one(self, params, rows):
    import jax
    import jax.numpy as jnp

    from tokensift.rho1 import selective_loss as sl

    def body(carry, row):
      logits = self._logits(params, row["tokens"])
      ce, _ = sl.token_cross_entropy(logits, row["tokens"][:, 1:])
      w = row["weight"][:, 1:]
      return (carry[0] + jnp.sum(ce * w), carry[1] + jnp.sum(w)), None

    (tot, n), _ = jax.lax.scan(body, (jnp.float32(0), jnp.float32(0)), rows)
    return tot / n

  def train(
    self,
    kind: str,
    rows: dict[str, np.ndarray],
    val: dict[str, np.ndarray],
    seeds: Sequence[int],
    run_dir: str | Path,
    log=None,
    stop_at: int | None = None,
    states: dict[str, Any] | None = None,
  ) -> dict[str, Any]:
    """Trains ``len(seeds)`` models on ``rows`` (batches drawn per seed) on the training core, with checkpoints
    and metrics in ``run_dir`` (a rerun resumes there); returns curves (per seed), read back from the metrics.
    ``stop_at``: end after that step as a preempted run would (then the curves hold what was logged).
    ``states``: when given, ``states[str(run_dir)]`` receives the final train state (stacked over seeds)."""
    from tokensift.trainer import core
    from tokensift.trainer.metrics import per_seed, read_metrics

    cfg = self.cfg
    n = rows["tokens"].shape[0]
    chunk = 8  # validation rows per scanned slice
    vn = -(-val["tokens"].shape[0] // chunk) * chunk
    vrows = {
      k: np.concatenate([v, np.zeros((vn - v.shape[0],) + v.shape[1:], v.dtype)]).reshape(
        (vn // chunk, chunk) + v.shape[1:]
      )
      for k, v in val.items()
    }

    def draws():  # the rows each seed trains on at each step: [seeds, batch_size]
      rngs = [np.random.default_rng(1000 + int(x)) for x in seeds]
      while True:
        yield np.stack([r.integers(0, n, cfg.batch_size) for r in rngs])

    def evaluate(state):
      val_ce = np.asarray(self._eval(state["params"], vrows))
      if log:
        log(f"    step {int(state['step'][0])}: val CE {' '.join(f'{v:.3f}' for v in val_ce)}")
      return {"val_ce": val_ce}

    batches = core.ReplayBatches(draws, lambda idx: {k: v[idx] for k, v in rows.items()})
    assert cfg.steps is not None  # (checked in __init__)
    settings = core.LoopSettings(
      num_steps=cfg.steps,
      checkpoint_every=cfg.eval_every,
      log_every=cfg.eval_every,
      eval_every=cfg.eval_every,
      keep_checkpoints=1,
      progress=False,
      desc=f"ablation {kind}",
      async_checkpoints=False,
    )  # runs share the process
    data = {
      "kind": kind,
      "seeds": [int(x) for x in seeds],
      "rows": _digest(rows),
      "val": _digest(val),
      "settings": {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("workers", "runs")},
    }
    result = core.run(
      self.steps[kind],
      self.init_state(kind, seeds),
      batches,
      run_dir,
      settings,
      data=data,
      eval_fn=evaluate,
      stop_at=stop_at,
    )
    if states is not None:
      states[str(run_dir)] = result.state
    curve = [{"step": r["step"], "val_ce": per_seed(r, "val_ce")} for r in read_metrics(run_dir, "eval")]
    train = read_metrics(run_dir, "train")
    slm, before = [], {k: np.zeros(len(seeds)) for k in COUNTS}
    for r in train if kind == "slm" else []:  # selection counts between logged steps: differences of totals
      total = {k: np.asarray(per_seed(r, k)) for k in COUNTS}
      slm.append({"step": r["step"], **{k: (total[k] - before[k]).tolist() for k in COUNTS}})
      before = total
    return {
      "seeds": [int(x) for x in seeds],
      "final_val_ce": curve[-1]["val_ce"] if curve else None,
      "best_val_ce": np.min([c["val_ce"] for c in curve], axis=0).tolist() if curve else None,
      "curve": curve,
      "train_curve": [{"step": r["step"], "train_ce": per_seed(r, "ce")} for r in train],
      "slm_selection": slm,
      "rows": int(n),
    }


def _digest(arrays: dict[str, np.ndarray]) -> str:
  """sha256 of named arrays (a resumed run must train on the same rows)."""
  import hashlib

  h = hashlib.sha256()
  for k in sorted(arrays):
    h.update(k.encode() + str(arrays[k].shape).encode() + str(arrays[k].dtype).encode())
    h.update(np.ascontiguousarray(arrays[k]).tobytes())
  return h.hexdigest()


def run_ablations(
  cfg: AblationConfig,
  data: dict[str, list[dict[str, Any]]],
  val_docs: list[dict[str, Any]],
  work_dir: str | Path,
  log=print,
  *,
  reference: Any = None,
  mapping: dict[int, int] | None = None,
) -> dict[str, Any]:
  """``data``: data set name -> documents ``{tokens, ref_losses, noise}`` (SmolLM2 ids); trains every run in
  ``cfg.runs`` for ``cfg.seeds`` seeds (``cfg.workers`` runs at a time) on ``positions_budget``'s positions, with
  checkpoints and metrics in ``work_dir/{run}`` (a rerun resumes each run there); returns the per-run results,
  the vocabulary, the unigram level and the training budget (positions each model sees, epochs of each data
  set, the regime).

  ``reference``: the params of a reference model of the ablation models' own kind (``reference_model``), trained
  in ``mapping`` (default ``vocabulary_mapping``): SLM's reference losses are then its losses on each packed row
  (Rho-1: the same units and contexts), replacing the documents' ``ref_losses``."""
  from concurrent.futures import ThreadPoolExecutor

  data = {k: unit_docs(cfg, v) for k, v in data.items()}
  val_docs = unit_docs(cfg, val_docs)
  mapping = mapping if mapping is not None else vocabulary_mapping(cfg, data)
  vocab = cfg.max_vocab
  val = pack(val_docs, mapping, cfg.seq_len)
  budget = positions_budget(cfg, {k: sum(len(d["tokens"]) for d in v) for k, v in data.items()})
  cfg = dataclasses.replace(cfg, steps=budget["steps"])
  trainer = AblationSteps(cfg, vocab)
  seen = budget["positions"]  # token positions each model trains on
  out: dict[str, Any] = {
    "vocab": {
      "size": vocab,
      "in_vocab_ids": len(mapping),
      "units": UNITS[cfg.vocabulary],
      "val_oov_share": float(np.mean(val["tokens"][val["weight"] > 0] == OOV)),
    },
    "settings": dataclasses.asdict(cfg),
    "budget": {
      **budget,
      "tokens_seen_per_model": seen,
      "params_per_model": trainer.param_count(),
      "val_docs": len(val_docs),
      "val_tokens": sum(len(d["tokens"]) for d in val_docs),
      "reference": "trained" if reference is not None else "per-document ref_losses",
    },
    "runs": {},
  }

  def one(name: str) -> dict[str, Any]:
    kind, dataset, what = RUNS[name]
    rows = pack(data[dataset], mapping, cfg.seq_len)
    if reference is not None and kind == "slm":  # (CLM's loss reads no reference losses)
      rows["ref"] = trainer.unit_losses(reference, rows["tokens"])
    tokens = sum(len(d["tokens"]) for d in data[dataset])  # (rows overlap by one: their weights count some twice)
    log(f"  ablation {name}: {len(data[dataset])} documents, {tokens} {UNITS[cfg.vocabulary]}, {cfg.seeds} seeds")
    res = trainer.train(kind, rows, val, list(range(cfg.seeds)), Path(work_dir) / name)
    return dict(
      res,
      loss=kind,
      data=dataset,
      what=what.format(rate=cfg.rate, mode=cfg.perplexity_mode),
      docs=len(data[dataset]),
      tokens=tokens,
      epochs=seen / max(1, tokens),
    )

  # Threads, not processes: every run shares the compiled steps, and XLA releases the GIL while it computes.
  with ThreadPoolExecutor(max_workers=cfg.workers) as pool:
    for name, res in zip(cfg.runs, pool.map(one, cfg.runs)):
      out["runs"][name] = res
  if "contaminated" in data:
    out["unigram_val_ce"] = unigram_ce(pack(data["contaminated"], mapping, cfg.seq_len), val, vocab)
  return out
