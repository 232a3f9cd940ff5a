"""The one C extension, the refine executor's word counter (refine/_words.c says why C); everything else is in
pyproject.toml. Optional: without a C compiler the build skips it, and tokensift.refine.word_count counts in pure
Python with the same results. (Declared here: pyproject.toml's ext-modules table is still experimental.)"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("tokensift.refine._words", sources=["refine/_words.c"], optional=True)])
