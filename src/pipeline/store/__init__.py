"""The store port: named queries grouped by table noun, returning typed rows.

- ``port``: the ``typing.Protocol`` classes (one per noun, and ``Tx`` holding them all);
- one module per noun (``executions``, ``stage_runs``, ``outbox``, ``notifications``,
  ``projects``, ``idempotency``, ``audit``, ``leases`` (sandbox slots), ``retention``,
  ``server`` (the health probe)): its rows (msgspec structs) and its asyncpg
  implementation (SQL as module constants, run as prepared statements: asyncpg caches
  the statement per connection by its text); ``execution_rows`` holds the executions'
  rows (``executions`` re-exports them);
- ``pg``: the asyncpg transaction (``PgTx``) over a pooled connection;
- ``memory``: the same port in memory, for the unit tier (a package: one module per noun,
  ``memory.store`` assembling ``MemoryStore``); one contract suite
  (``tests/integration/store/test_contract.py``) runs against both.

Adding a query: a method on the noun's Protocol in ``port``, its SQL and method on the
noun's ``Pg…`` class, the same on the ``Memory…`` class (``memory/<noun>.py``), and a
contract test.
"""
