"""Built-in task families (importing this module registers them)."""

from mechrare.data.tasks import generative as _generative  # noqa: F401  (registers)
from mechrare.data.tasks import pooled as _pooled  # noqa: F401  (registers)
from mechrare.data.tasks.base import TASK_FAMILIES, Example, Task, register_task

__all__ = ["TASK_FAMILIES", "Example", "Task", "register_task"]
