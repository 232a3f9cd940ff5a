"""tokensift.trainer: a small embedded trainer for one machine (CPU or one GPU) that runs the same
networks and losses as the t5x launches.

Modules (import what you need; this ``__init__`` imports nothing): ``config`` (frozen dataclasses bound from
gin), ``optim`` (optax AdamW/Adafactor + schedules), ``inputs`` (deterministic seqio batches, resumable in
constant time), ``steps`` (init, train and eval steps under the partitioning rules), ``checkpoints`` (orbax
manager with resume, including the input iterator), ``loop`` (``train(config, network)``: metrics to
TensorBoard + JSON lines, tqdm progress bar).
"""
