"""``python -m tokensift.cli``: the ``tokensift`` command."""

import sys

from tokensift.cli import main

sys.exit(main())
