"""The ablations' data (DESIGN §12): documents in the models' units (characters or SmolLM2 ids), the compact
vocabulary, packing into rows (tokens, reference losses, weights and noise labels kept aligned), the unigram
level, and the positions budget every run trains on (the data-abundant rule). Pure NumPy; the models and their
training are ``pipeline.ablations``."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

AblationConfig = Any  # ``pipeline.ablations.AblationConfig`` (not imported: that module builds on this one)


PAD, OOV, SEP = 0, 1, 2
UNITS = {"chars": "characters", "tokens": "SmolLM2 tokens"}


def compact_vocab(token_lists: Sequence[Sequence[int]], max_vocab: int) -> dict[int, int]:
  """SmolLM2 id -> compact id (3 .. max_vocab - 1), most frequent first (ties by id)."""
  counts: dict[int, int] = {}
  for t in token_lists:
    for i in t:
      counts[int(i)] = counts.get(int(i), 0) + 1
  order = sorted(counts, key=lambda i: (-counts[i], i))[: max_vocab - 3]
  return {tok: 3 + k for k, tok in enumerate(order)}


def to_chars(doc: dict[str, Any]) -> dict[str, list]:
  """A document's scored tokens -> its characters, for ``vocabulary='chars'``. ``doc``: ``text`` (the characters
  the tokens cover), ``ends`` ([n] end offset of each token in ``text``, non-decreasing), ``ref_losses`` and
  ``noise`` ([n] per token). Returns ``tokens`` (code points), ``ref_losses`` and ``noise`` per character: the
  reference loss of the tokens ending at one offset (e.g. the byte-level pieces of one character) is spread
  evenly over the characters since the previous end, so a document's characters sum to its reference NLL; a
  character is noise when one of those tokens is."""
  text, ends = doc["text"], [int(e) for e in doc["ends"]]
  if len(ends) != len(doc["ref_losses"]) or (ends and ends[-1] != len(text)):
    raise ValueError(
      f"to_chars: {len(ends)} token ends for {len(doc['ref_losses'])} losses, last end "
      f"{ends[-1] if ends else None} for {len(text)} characters"
    )
  ref, noise = [0.0] * len(text), [0] * len(text)
  prev, loss, noisy = 0, 0.0, 0
  for k, (e, r, z) in enumerate(zip(ends, doc["ref_losses"], doc["noise"])):
    loss, noisy = loss + float(r), noisy | int(z)
    if e > prev and (k + 1 == len(ends) or ends[k + 1] != e):  # the last of the tokens ending here
      ref[prev:e] = [loss / (e - prev)] * (e - prev)
      noise[prev:e] = [noisy] * (e - prev)
      prev, loss, noisy = e, 0.0, 0
  if loss and text:  # trailing pieces that added no character
    ref[-1] += loss
  return {"tokens": [ord(c) for c in text], "ref_losses": ref, "noise": noise}


def pack(docs: Sequence[dict[str, Any]], mapping: dict[int, int], seq_len: int) -> dict[str, np.ndarray]:
  """Documents ``{tokens, ref_losses, noise}`` -> rows of ``seq_len + 1`` tokens (the stream of documents,
  each followed by a separator, cut into rows; the last row padded). Returns ``tokens`` int32 [rows, L+1] and
  ``ref`` / ``weight`` / ``noise`` float32 [rows, L+1] aligned with the tokens (separators and padding have
  weight 0)."""
  tok, ref, w, noise = [], [], [], []
  for d in docs:
    tok += [mapping.get(int(i), OOV) for i in d["tokens"]] + [SEP]
    ref += list(d["ref_losses"]) + [0.0]
    w += [1.0] * len(d["tokens"]) + [0.0]
    noise += [float(x) for x in d["noise"]] + [0.0]
  n = max(1, -(-len(tok) // seq_len))
  size = n * seq_len + 1
  out = {
    "tokens": np.full(size, PAD, np.int32),
    "ref": np.zeros(size, np.float32),
    "weight": np.zeros(size, np.float32),
    "noise": np.zeros(size, np.float32),
  }
  for k, v in (("tokens", tok), ("ref", ref), ("weight", w), ("noise", noise)):
    out[k][: len(v)] = v
  idx = np.arange(n)[:, None] * seq_len + np.arange(seq_len + 1)[None, :]
  return {k: v[idx] for k, v in out.items()}


def unigram_ce(train_rows: dict[str, np.ndarray], val_rows: dict[str, np.ndarray], vocab: int) -> float:
  """Cross-entropy (nats) of the held-out targets under the training targets' unigram (add-one smoothed):
  the level a model that ignores context reaches."""
  t, w = train_rows["tokens"][:, 1:].ravel(), train_rows["weight"][:, 1:].ravel() > 0
  counts = np.bincount(t[w], minlength=vocab).astype(np.float64) + 1.0
  logp = np.log(counts / counts.sum())
  vt, vw = val_rows["tokens"][:, 1:].ravel(), val_rows["weight"][:, 1:].ravel() > 0
  return float(-logp[vt[vw]].mean())


SELECTIONS = ("random", "askllm", "perplexity", "density", "combination")  # the rate% subsets of the refined pool


def unit_docs(cfg: AblationConfig, documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
  """Documents in the models' units: ``to_chars`` for ``vocabulary='chars'`` (ValueError when a row lacks the
  ``text`` and token ``ends`` that needs), else as they are."""
  if cfg.vocabulary != "chars":
    return list(documents)
  missing = [d for d in documents if "text" not in d or "ends" not in d]
  if missing:
    raise ValueError(
      f"vocabulary='chars' needs each document's 'text' and token 'ends' ({len(missing)} rows "
      "lack them: a perplexity stage from before they were recorded; rerun it)"
    )
  return [to_chars(d) for d in documents]


def vocabulary_mapping(cfg: AblationConfig, data: dict[str, list[dict[str, Any]]]) -> dict[int, int]:
  """The compact vocabulary of a run: from the whole pool (``contaminated`` and ``refined_pool``, the documents
  every data set is drawn from) when present, else from every data set. The reference model is trained in the
  same mapping, so its losses and the ablation models' are over the same units."""
  sets = [k for k in ("contaminated", "refined_pool") if k in data] or list(data)
  return compact_vocab([d["tokens"] for k in sets for d in data[k]], cfg.max_vocab)


def positions_budget(cfg: AblationConfig, units: dict[str, int]) -> dict[str, Any]:
  """The positions every run trains on (see ``AblationConfig``). ``units``: data set -> units of text it holds.
  Returns ``steps``, ``positions`` (= steps x batch_size x seq_len), ``rule``, the ``limits`` (positions) the rule
  took the minimum of and which one ``bound`` it, ``epochs`` per data set and the ``regime``: 'data-abundant'
  when every run sees at most one epoch of the whole pool and at most ``selection_epochs`` of each selection,
  else 'repeated data'. ValueError when the data hold less than one step."""
  per_step = cfg.batch_size * cfg.seq_len
  limits: dict[str, float] = {}
  bound = None
  if cfg.steps is None:
    if "contaminated" in units:
      limits["pool"] = cfg.pool_epochs * units["contaminated"]
    sel = {k: units[k] for k in SELECTIONS if k in units}
    if sel:
      smallest = min(sel, key=lambda k: (sel[k], k))
      limits[f"selection {smallest}"] = cfg.selection_epochs * sel[smallest]
    if not limits:
      limits["smallest data set"] = cfg.selection_epochs * min(units.values())
    bound = min(limits, key=lambda k: limits[k])
    steps = int(limits[bound] // per_step)
    if steps < 1:
      raise ValueError(
        f"the ablation data hold {int(limits[bound])} positions under the budget rule ({bound}): less than one "
        f"step of {per_step}; add documents or set AblationConfig.steps"
      )
    rule = f"min({cfg.pool_epochs:g} epoch of the pool, {cfg.selection_epochs:g} of the smallest selection)"
  else:
    steps, rule = int(cfg.steps), "AblationConfig.steps"
  positions = steps * per_step
  epochs = {k: positions / v for k, v in units.items() if v}
  abundant = epochs.get("contaminated", 0.0) <= 1.0 + 1e-9 and all(
    epochs.get(k, 0.0) <= cfg.selection_epochs + 1e-9 for k in SELECTIONS
  )
  return {
    "steps": steps,
    "positions": positions,
    "rule": rule,
    "limits": limits,
    "bound": bound,
    "units": dict(units),
    "epochs": epochs,
    "regime": "data-abundant" if abundant else "repeated data",
  }
