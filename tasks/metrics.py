"""seqio metric functions for tokensift tasks: what ``t5x.eval`` reports (DESIGN §6 evaluation).

- Score metrics (``(targets, scores)``; t5x ``score_batch`` gives each example's summed target log-likelihood):
  ``perplexity`` = exp(total negative log-likelihood / total target tokens), ``nll_per_token`` and
  ``nll_per_sequence``. Token counts come from the examples themselves: the tasks' ``postprocess_fn``
  (``keep_target_tokens``) turns each target into ``{'text', 'tokens'}`` (the target ids, EOS included: exactly
  the tokens t5x scores).
- Predict metrics (``(targets, predictions)``; t5x ``predict_batch`` decodes a continuation): ``token_accuracy``
  (predicted token == target token, position by position, over the target's tokens without EOS; the prediction
  is re-encoded with the task's vocabulary) and ``sequence_accuracy`` (exact text match).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np


def keep_target_tokens(output: Any, example: Mapping[str, Any] | None = None, is_target: bool = False) -> Any:
  """seqio postprocess_fn: targets -> ``{'text': str, 'tokens': int ids (EOS included)}``; predictions
  unchanged."""
  if not is_target:
    return output
  tokens = (
    [] if example is None or "targets" not in example else [int(t) for t in np.ravel(example["targets"]) if t != 0]
  )
  text = output.decode("utf-8") if isinstance(output, bytes) else output
  return {"text": text, "tokens": tokens}


def _count(targets: Sequence[Any]) -> int:
  n = 0
  for t in targets:
    if not isinstance(t, Mapping) or "tokens" not in t:
      raise ValueError(f"score metrics need targets post-processed by keep_target_tokens; got {type(t).__name__}")
    n += len(t["tokens"])
  return n


def perplexity(targets: Sequence[Any], scores: Sequence[float]) -> dict[str, float]:
  """``scores``: per-example sums of target log-likelihoods (t5x ``score_batch``). Returns perplexity,
  nll_per_token and nll_per_sequence."""
  s = np.asarray(scores, np.float64)
  tokens = _count(targets)
  if tokens == 0 or s.size == 0:
    raise ValueError(f"perplexity over {s.size} examples and {tokens} target tokens is undefined")
  nll = -float(s.sum())
  return {"perplexity": float(np.exp(nll / tokens)), "nll_per_token": nll / tokens, "nll_per_sequence": nll / s.size}


def token_accuracy(targets: Sequence[Any], predictions: Sequence[str], vocabulary=None) -> dict[str, float]:
  """Position-wise token accuracy of re-encoded predictions against the target ids (EOS excluded), and
  exact-match sequence accuracy. ``vocabulary`` encodes predictions (bound per task)."""
  if vocabulary is None:
    raise ValueError("token_accuracy needs the task's vocabulary (tasks bind it: ENCDEC_METRICS, PREFIX_LM_METRICS)")
  hits = total = exact = 0
  for t, p in zip(targets, predictions):
    want = [i for i in t["tokens"] if i != vocabulary.eos_id]
    got = list(vocabulary.encode(p if isinstance(p, str) else p.decode("utf-8")))
    hits += sum(a == b for a, b in zip(want, got))
    total += len(want)
    exact += int(t["text"] == p)
  return {"token_accuracy": hits / max(1, total), "sequence_accuracy": exact / max(1, len(targets))}


def _accuracy_for(vocab_fn):
  def accuracy(targets, predictions):
    return token_accuracy(targets, predictions, vocabulary=vocab_fn())

  accuracy.__name__ = "token_accuracy"
  return accuracy


def _lazy(name: str):
  def get():
    from tokensift.tasks import vocabularies

    return getattr(vocabularies, name)()

  return get


LM_METRICS = (perplexity,)  # decoder-only LM tasks (targets only): scored, nothing to continue
ENCDEC_METRICS = (perplexity, _accuracy_for(_lazy("c4_t5")))  # span corruption and T5-vocabulary prefix tasks
PREFIX_LM_METRICS = (perplexity, _accuracy_for(_lazy("smollm2")))  # decoder-only prefix tasks
