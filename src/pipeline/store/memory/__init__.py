"""The store port in memory, one module per noun (``MemoryExecutions`` in
``executions``, ...); ``store`` assembles them into ``MemoryTx`` and ``MemoryStore``.

Adding a query: its method on the noun's ``Memory…`` class here (and in ``port``, the
noun's ``Pg…`` class and the contract suite, see ``pipeline.store``).
"""

from pipeline.store.memory.base import Tables
from pipeline.store.memory.store import MemoryStore, MemoryTx

__all__ = ["MemoryStore", "MemoryTx", "Tables"]
