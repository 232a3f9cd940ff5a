"""tokensift.core: the ground floor (DESIGN §1). Paths, the one document layer (``docs``: tasks or files, local
or remote through ``storage``, one id rule, one skip report), resumable sharded jobs (``jobs``, ``multihost``,
``beam_util``), tokenizer files (``hf_tokenizer``) and the compilation cache; no argparse (the command line's
flags live in ``tokensift.cli``). It imports no other tokensift package (checked by import-linter, ``.importlinter``).

Import what you need; this ``__init__`` imports nothing.
"""
