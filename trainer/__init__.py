"""tokensift.trainer: a small embedded trainer for one machine (CPU or one GPU) that runs the same
networks and losses as the t5x launches, on a training core that the refiner SFT (``refine``) and the seeded
ablations (``pipeline``) use too.

Modules (import what you need; this ``__init__`` imports nothing): ``core`` (the training core: train state,
optax step, ``Trainer.train(state, batches)`` with orbax checkpoints, resume and metrics), ``metrics`` (clu
writers: TensorBoard, logs, ``metrics.jsonl``, and its reader), ``checkpoints`` (orbax manager, including the
input iterator), ``config`` (frozen dataclasses bound from gin), ``optim`` (optax AdamW/Adafactor + schedules),
``inputs`` (deterministic seqio batches, resumable in constant time), ``steps`` (init, train and eval steps under
the partitioning rules), ``loop`` (``train(config, network)``: the embedded trainer on the core).
"""
