"""Every tokensift seqio task registered: the raw, span-corruption and prefix tasks and mixtures
(``tokensift.tasks``), the ProX-refined tasks (``tokensift.refine.tasks``) and the selection variants named in
``$TOKENSIFT_SELECTIONS`` (``tokensift.selection.variants``).

For programs that only import a module: t5x ``--gin.MIXTURE_OR_TASK_MODULE="'tokensift.all_tasks'"``, seqio
``cache_tasks_main --module_import=tokensift.all_tasks``. The ``tokensift`` command imports it before a command
that reads a task. It sits at the top layer, beside the command line: the data layer below never imports the
method packages (``.importlinter``).
"""

import tokensift.refine.tasks  # registers the refined tasks and adds their registrar
import tokensift.selection.variants  # adds the $TOKENSIFT_SELECTIONS registrar
import tokensift.tasks

NAMES = tokensift.tasks.register_all()
