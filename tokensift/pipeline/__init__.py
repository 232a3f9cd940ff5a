"""tokensift.pipeline: the main job, ``tokensift pipeline`` (refine -> score -> embed -> DENSITY -> select ->
reference losses -> train SLM/CLM -> evaluate -> report), one resumable stage per folder of the run directory.

Modules: ``config`` (frozen dataclasses bound from gin), ``stages`` (the resumable stage runner: markers,
timings, documents in/out), ``corpus_stages`` / ``lm_stages`` (the default stage implementations), ``run``
(``run_pipeline``), ``report`` (the HTML report subpackage). Importing this package imports nothing heavy.
"""
