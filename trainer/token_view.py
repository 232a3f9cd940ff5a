"""A static HTML view of Rho-1 token selection (as the Rho-1 paper's figures): each token of a document coloured
by whether SLM selects it (red shades, darker = further above the selection threshold in excess loss) or not
(blue shades, darker = further below it), with its model loss, reference loss and excess loss in a tooltip.

``render_token_html`` is pure (pieces + numbers -> HTML); ``write_view`` computes the numbers for one document
of a reference-loss task from a trained run's latest checkpoint.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import numpy as np


def token_pieces(vocab, ids: Sequence[int]) -> list[str]:
  """The text each token adds, by prefix decoding: a character whose bytes span several byte-level BPE tokens
  belongs to the token that completes it (the others get ""), so ``"".join(pieces) == vocab.decode(ids)``."""
  pieces, emitted = [], ""
  for i in range(len(ids)):
    text = vocab.decode([int(t) for t in ids[: i + 1]])
    if text.endswith("\ufffd") and i + 1 < len(ids):  # an incomplete character: wait for its last byte
      pieces.append("")
      continue
    if not text.startswith(emitted):  # decoders that rewrite earlier text (rare): fall back to the token alone
      pieces.append(vocab.decode([int(ids[i])]))
    else:
      pieces.append(text[len(emitted) :])
    emitted = text
  return pieces


def _shade(value: float, scale: float, rgb: tuple[int, int, int]) -> str:
  a = 0.12 + 0.78 * float(np.clip(value / scale, 0.0, 1.0)) if scale > 0 else 0.5
  return f"rgba({rgb[0]},{rgb[1]},{rgb[2]},{a:.2f})"


def render_token_html(
  pieces: Sequence[str],
  excess: np.ndarray,
  selected: np.ndarray,
  *,
  title: str = "",
  model_losses: np.ndarray | None = None,
  ref_losses: np.ndarray | None = None,
) -> str:
  """HTML page for one document. ``pieces``: text per token; ``excess``, ``selected`` (bool), ``model_losses``
  and ``ref_losses``: one value per token."""
  excess = np.asarray(excess, np.float64)
  selected = np.asarray(selected, bool)
  if not (len(pieces) == excess.shape[0] == selected.shape[0]):
    raise ValueError(f"{len(pieces)} pieces but {excess.shape[0]} excess losses and {selected.shape[0]} flags")
  finite = np.isfinite(excess)
  # The selection threshold: the lowest excess loss that was selected (shades measure distance from it).
  threshold = (
    float(excess[selected & finite].min())
    if (selected & finite).any()
    else float(excess[finite].max() if finite.any() else 0.0)
  )
  above = np.maximum(excess - threshold, 0.0)[selected & finite]
  below = np.maximum(threshold - excess, 0.0)[~selected & finite]
  scale_hi = float(np.percentile(above, 95)) if above.size else 1.0
  scale_lo = float(np.percentile(below, 95)) if below.size else 1.0
  spans = []
  for i, (piece, e, s) in enumerate(zip(pieces, excess, selected)):
    tip = [f"token {i}", f"excess {e:.3f}"]
    if model_losses is not None:
      tip.append(f"model loss {float(model_losses[i]):.3f}")
    if ref_losses is not None:
      tip.append(f"reference loss {float(ref_losses[i]):.3f}")
    tip.append("selected" if s else "not selected")
    if s:
      colour = _shade(max(e - threshold, 0.0), scale_hi, (220, 50, 47))
    else:
      colour = _shade(max(threshold - e, 0.0), scale_lo, (38, 110, 200))
    text = html.escape(piece).replace("\n", "\u21b5<br>")
    spans.append(
      f'<span class="{"sel" if s else "uns"}" style="background:{colour}" '
      f'title="{html.escape(" | ".join(tip))}">{text}</span>'
    )
  n, k = len(pieces), int(selected.sum())
  stats = (
    f"{k} of {n} tokens selected ({k / max(n, 1):.0%}); mean excess loss selected "
    f"{excess[selected].mean() if k else float('nan'):.3f}, unselected "
    f"{excess[~selected].mean() if k < n else float('nan'):.3f}"
  )
  return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title or "token selection")}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; }}
.doc {{ font-family: monospace; white-space: pre-wrap; line-height: 1.7; }}
.doc span {{ border-radius: 2px; }}
.sel {{ color: #000; }} .uns {{ color: #333; }}
.legend span {{ padding: 0 .4em; }}
</style></head><body>
<h2>{html.escape(title or "token selection")}</h2>
<p>{html.escape(stats)}</p>
<p class="legend">excess loss = model loss - reference loss; selection threshold {threshold:.3f}:
<span style="background:rgba(220,50,47,.85)">selected, far above</span>
<span style="background:rgba(220,50,47,.2)">selected, near the threshold</span>
<span style="background:rgba(38,110,200,.2)">not selected, near the threshold</span>
<span style="background:rgba(38,110,200,.85)">not selected, far below</span></p>
<div class="doc">{"".join(spans)}</div>
</body></html>
"""


def document_losses(
  config, network: Any, split: str, doc_index: int, mesh=None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(targets, model losses, reference losses) of document ``doc_index`` of ``split`` under the run's latest
  checkpoint (``config.model_dir``); each [n] for the document's first ``feature_lengths['targets']`` tokens."""
  import jax
  from tokensift.models import partitioning
  from tokensift.rho1.selective_loss import token_cross_entropy
  from tokensift.trainer import inputs, optim
  from tokensift.trainer.checkpoints import Checkpointer
  from tokensift.trainer.steps import Steps, compute_logits, is_encoder_decoder

  if is_encoder_decoder(network):
    raise ValueError("token-view shows decoder-only runs (a Llama-family network)")
  task = inputs.get_task(config.task)
  if "ref_losses" not in task.output_features:
    raise ValueError(f"task {config.task!r} has no reference losses; use a run on a reference-loss task")
  lengths = dict(config.feature_lengths)
  ds = task.get_dataset(sequence_length=lengths, split=split, shuffle=False, num_epochs=1, use_cached=False)
  ex = next(iter(ds.skip(doc_index).take(1).as_numpy_iterator()), None)
  if ex is None:
    raise ValueError(f"split {split!r} of {config.task!r} has no document {doc_index}")
  targets = np.asarray(ex["targets"], np.int32)
  ref = np.asarray(ex["ref_losses"], np.float32)
  mesh = mesh or partitioning.make_mesh(partitioning.MeshConfig(data=1), jax.devices()[:1])
  tx, schedule = optim.make_optimizer(config.optimizer, config.train_steps)
  steps = Steps(network, config.loss, tx, schedule, mesh, config.mesh.rules, config.seed)
  state = steps.init_state(1, lengths)
  ckpt = Checkpointer(config.model_dir, keep=config.keep_checkpoints)
  latest = ckpt.latest_step()
  if latest is None:
    ckpt.close()
    raise FileNotFoundError(f"no checkpoint in {config.model_dir!r}: train the run first")
  state, _ = ckpt.restore(latest, steps.abstract_state(state))
  ckpt.close()
  length = lengths["targets"]
  padded = np.zeros((1, length), np.int32)
  padded[0, : targets.size] = targets
  inputs_ = np.zeros_like(padded)
  inputs_[:, 1:] = padded[:, :-1]
  batch = {"decoder_input_tokens": inputs_, "decoder_target_tokens": padded}
  logits = jax.jit(lambda p, b: compute_logits(network, p, b))(state["params"], batch)
  import jax.numpy as jnp

  ce, _ = token_cross_entropy(logits, jnp.asarray(padded))
  return targets, np.asarray(ce)[0, : targets.size], ref


def write_view(
  config,
  network: Any,
  out: str | Path,
  *,
  split: str = "validation",
  doc_index: int = 0,
  slm_ratio: float | None = None,
) -> Path:
  """Writes the HTML view of one document (selection within the document at ``slm_ratio``, default the run's)."""
  from tokensift.rho1.selective_loss import check_slm_ratio, select_tokens
  from tokensift.trainer import inputs

  targets, ce, ref = document_losses(config, network, split, doc_index)
  ratio = config.loss.slm_ratio if slm_ratio is None else check_slm_ratio(slm_ratio, "--slm_ratio")
  excess = ce - ref
  import jax.numpy as jnp

  selected = np.asarray(
    select_tokens(jnp.asarray(excess[None]), jnp.ones((1, excess.size), jnp.float32), ratio, "sequence")
  )[0]
  vocab = inputs.get_task(config.task).output_features["targets"].vocabulary
  page = render_token_html(
    token_pieces(vocab, targets.tolist()),
    excess,
    selected,
    model_losses=ce,
    ref_losses=ref,
    title=f"{config.task} [{split} #{doc_index}] slm_ratio {ratio:g}",
  )
  out = Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(page, encoding="utf-8")
  return out
