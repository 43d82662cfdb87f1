"""Tasks, the background source, the mixture and the vocabulary."""

from mechrare.data.background import MarkovSource
from mechrare.data.instances import Instances
from mechrare.data.mixture import Batch, Mixture
from mechrare.data.tasks import TASK_FAMILIES, Example, Task, register_task
from mechrare.data.vocab import Vocabulary

__all__ = ["Batch", "Example", "Instances", "MarkovSource", "Mixture", "TASK_FAMILIES", "Task", "Vocabulary", "register_task"]
