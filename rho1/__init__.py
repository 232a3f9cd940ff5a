"""tokensift.rho1: Rho-1 selective language modeling (DESIGN §6).

Modules (import what you need; this ``__init__`` imports nothing): ``selective_loss`` (pure losses: token
cross-entropy, top-k excess-loss selection), ``reference_losses`` / ``encdec_reference_losses`` (the reference
model's per-token losses as a sharded job and a seqio task), ``feature_converters`` (carry the reference losses
into model features), ``t5x_models`` (t5x model subclasses with the SLM loss). ``tokensift reference-losses`` is
``tokensift.cli.reference_losses``.
"""
