"""tokensift.models: Flax networks (T5 / FLAN-T5, Llama-family decoders, BERT), their checkpoint loaders, generation
and the partitioning rules (DESIGN §7). Import what you need; this ``__init__`` imports nothing."""
