"""tokensift.tasks: vocabularies, data sources, preprocessors and the seqio task registry.

Importing this package registers the tokensift seqio tasks (``c4_en_raw``, ``owm_raw``, ...); it reads no
data until a task's dataset is requested. The method packages' task families (ProX-refined tasks, selection
variants) register when their modules are imported: ``import tokensift.all_tasks`` registers all of them.
"""

import tensorflow as _tf

_tf.config.set_visible_devices([], "GPU")  # SeqIO's tf.data pipelines never take accelerator memory

from tokensift.tasks.registration import register_all  # noqa: E402
from tokensift.tasks.registry import add_task as add_task  # noqa: E402  (public: tokensift.tasks.add_task)

register_all()
