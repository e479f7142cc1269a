"""Dev-only tools, apart from the request path: the local stack (``devteam services``),
the one-shot local run (``devteam run``), the demo (``devteam demo``) and the scripted
language model the tests and the demo run Aider against.

Nothing on the request path (the gateway app and its routes, the pipeline, the runner)
imports this package; an import-linter contract in pyproject.toml enforces it.
"""
