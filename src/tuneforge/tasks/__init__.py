from tuneforge.plugins import import_submodules
from tuneforge.tasks.base import TASKS, EvalResult, RecordError, Task, TaskParams

import_submodules(__name__)

__all__ = ["TASKS", "EvalResult", "RecordError", "Task", "TaskParams"]
