"""Task lists: read the three formats, pick the next task, write status changes back.

The file is the source of truth: parsing then rendering an unchanged list gives the same
bytes, and a change touches only the bytes it must (see CONTRACTS.md, "Task list file").
"""

from runner.tasklist.document import TaskList
from runner.tasklist.find import TASK_LIST_NAMES, find_task_list
from runner.tasklist.generate import generate_task_list
from runner.tasklist.model import Problem, Task, TaskListError, TaskStatus, TaskType
from runner.tasklist.select import Injection, InjectionType, select_next

__all__ = [
    "TASK_LIST_NAMES",
    "Injection",
    "InjectionType",
    "Problem",
    "Task",
    "TaskList",
    "TaskListError",
    "TaskStatus",
    "TaskType",
    "find_task_list",
    "generate_task_list",
    "select_next",
]
