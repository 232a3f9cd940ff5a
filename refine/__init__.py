"""tokensift.refine: ProX refinement (DESIGN §3).

Modules (import what you need; this package imports nothing at load time):
``program`` (grammar + parser), ``executor`` (pure execution + result rules), ``chunks`` (numbered chunks and
prompts), ``rules`` (the rule programmer), ``model_programmer`` (refining-model inference, JAX),
``tf_preprocessors`` and ``tasks`` (seqio, TensorFlow), ``job`` (the refine job; ``tokensift refine`` is
``tokensift.cli.refine``).
"""
