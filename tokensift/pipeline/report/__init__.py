"""The pipeline's report: one static HTML page with PNG figures, rebuilt from a finished run directory.

``page.write_report`` (the page: evidence first, then the run's stages), ``evidence_sections`` (each method against
the known answers), ``ablation_sections`` (the seeded ablations), ``text`` (numbers and words in sentences),
``plots`` (matplotlib on Agg, the figures' text sizes and the one figure saver)."""
