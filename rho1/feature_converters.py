"""seqio feature converters that carry per-token reference losses through padding and packing.

seqio converters drop pass-through features when packing, so a Rho-1 task's ``ref_losses`` (float32, one per
``targets`` token, DESIGN §6) is packed together with the targets here:

  task features  : targets int32[n], ref_losses float32[n]   (+ inputs int32[m] for encoder-decoder)
  model features : the seqio LM / EncDec features + decoder_ref_losses float32[length]

``decoder_ref_losses[b, i]`` is the reference loss of ``decoder_target_tokens[b, i]`` (0.0 on padding).
seqio's tf-ops packer only handles integer features (it casts to int32 and treats 0 as padding), so the losses
travel through it as their float32 bit patterns plus one: for every non-NaN float that integer is non-zero and
fits int32, and decoding after packing restores the exact float32 values. Targets and bit patterns have equal
lengths, so the packer makes identical decisions for both and the losses stay aligned with the targets.

The reference-loss length is the targets length: ``task_feature_lengths`` must give both, equal (t5x passes
``TASK_FEATURE_LENGTHS`` straight to ``Task.get_dataset``, which trims every output feature).
"""

from __future__ import annotations

from typing import Mapping

import seqio
import tensorflow as tf

REF_FEATURE = "ref_losses"
MODEL_REF_FEATURE = "decoder_ref_losses"

_Spec = seqio.FeatureConverter.FeatureSpec


def encode_losses(losses: tf.Tensor) -> tf.Tensor:
  """float32[n] -> int32[n] bit patterns + 1 (never 0 for a non-NaN float; NaN is rejected)."""
  losses = tf.convert_to_tensor(losses, tf.float32)
  tf.debugging.assert_equal(tf.reduce_any(tf.math.is_nan(losses)), False, message="reference losses contain NaN")
  return tf.bitcast(losses, tf.int32) + 1


def decode_losses(bits: tf.Tensor) -> tf.Tensor:
  """Inverse of ``encode_losses``; 0 (padding) decodes to 0.0."""
  values = tf.bitcast(bits - 1, tf.float32)
  return tf.where(tf.equal(bits, 0), tf.zeros_like(values), values)


def _check_lengths(task_feature_lengths: Mapping[str, int]) -> None:
  t, r = task_feature_lengths.get("targets"), task_feature_lengths.get(REF_FEATURE)
  if t != r:
    raise ValueError(
      f"task_feature_lengths[{REF_FEATURE!r}]={r} must equal task_feature_lengths['targets']={t}: "
      "reference losses are aligned one per target token"
    )


def _encode_example(ex: Mapping[str, tf.Tensor], keys: tuple[str, ...]) -> dict[str, tf.Tensor]:
  targets = ex["targets"]
  ref = tf.cast(ex[REF_FEATURE], tf.float32)
  checks = [
    tf.debugging.assert_equal(tf.size(targets), tf.size(ref), message="ref_losses and targets differ in length"),
    # seqio's packer keeps the first count_nonzero(targets) tokens: an interior 0 would shift the alignment.
    tf.debugging.assert_equal(
      tf.reduce_all(tf.not_equal(targets, 0)), True, message="targets contain the padding id 0 inside the sequence"
    ),
  ]
  with tf.control_dependencies(checks):
    out = {k: tf.identity(ex[k]) for k in keys}
    out[REF_FEATURE] = encode_losses(ref)
  return out


class _RefLossesMixin:
  """What both converters add to seqio's: ``ref_losses`` checked and carried through packing/padding (encoded
  beside the token features ``_TOKEN_FEATURES``), then decoded into ``decoder_ref_losses`` aligned with the
  decoder targets. Listed first among the bases, so ``super()`` is the seqio converter."""

  _TOKEN_FEATURES: tuple[str, ...] = ()

  def _convert_example(self, features: Mapping[str, tf.Tensor]) -> Mapping[str, tf.Tensor]:
    d = dict(super()._convert_example(features))  # pyright: ignore[reportAttributeAccessIssue]  (a mixin: super() is the seqio converter)
    d[MODEL_REF_FEATURE] = decode_losses(features[REF_FEATURE])
    return d

  def _convert_features(self, ds: tf.data.Dataset, task_feature_lengths: Mapping[str, int]) -> tf.data.Dataset:
    _check_lengths(task_feature_lengths)
    keys = self._TOKEN_FEATURES
    ds = ds.map(lambda ex: _encode_example(ex, keys), num_parallel_calls=tf.data.AUTOTUNE)
    ds = self._pack_or_pad(ds, task_feature_lengths)  # pyright: ignore[reportAttributeAccessIssue]  (a mixin: super() is the seqio converter)
    return ds.map(self._convert_example, num_parallel_calls=tf.data.AUTOTUNE)

  def get_model_feature_lengths(self, task_feature_lengths: Mapping[str, int]) -> Mapping[str, int]:
    lengths = dict(super().get_model_feature_lengths(task_feature_lengths))  # pyright: ignore[reportAttributeAccessIssue]  (a mixin: super() is the seqio converter)
    lengths[MODEL_REF_FEATURE] = task_feature_lengths["targets"]
    return lengths


class SelectiveLMFeatureConverter(_RefLossesMixin, seqio.LMFeatureConverter):
  """``seqio.LMFeatureConverter`` (decoder-only LM) plus ``decoder_ref_losses`` aligned with the targets."""

  TASK_FEATURES = {"targets": _Spec(dtype=tf.int32), REF_FEATURE: _Spec(dtype=tf.float32)}
  MODEL_FEATURES = {**seqio.LMFeatureConverter.MODEL_FEATURES, MODEL_REF_FEATURE: _Spec(dtype=tf.float32)}
  _TOKEN_FEATURES = ("targets",)


class SelectiveEncDecFeatureConverter(_RefLossesMixin, seqio.EncDecFeatureConverter):
  """``seqio.EncDecFeatureConverter`` plus ``decoder_ref_losses`` aligned with the decoder targets."""

  TASK_FEATURES = {
    "inputs": _Spec(dtype=tf.int32),
    "targets": _Spec(dtype=tf.int32),
    REF_FEATURE: _Spec(dtype=tf.float32),
  }
  MODEL_FEATURES = {**seqio.EncDecFeatureConverter.MODEL_FEATURES, MODEL_REF_FEATURE: _Spec(dtype=tf.float32)}
  _TOKEN_FEATURES = ("inputs", "targets")

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if self._passthrough_features:
      raise ValueError("SelectiveEncDecFeatureConverter does not take passthrough features")


def converter_for(
  task: seqio.Task | seqio.Mixture, encoder_decoder: bool, pack: bool = True, **kwargs
) -> seqio.FeatureConverter:
  """The converter a task needs: the Selective* ones when it has ``ref_losses``, else plain seqio's."""
  has_ref = REF_FEATURE in task.output_features
  if encoder_decoder:
    cls = SelectiveEncDecFeatureConverter if has_ref else seqio.EncDecFeatureConverter
  else:
    cls = SelectiveLMFeatureConverter if has_ref else seqio.LMFeatureConverter
  return cls(pack=pack, **kwargs)
