"""The pipeline on this machine, driven from a terminal: what ``devteam run`` and
``devteam demo`` share (the service processes they start, the engines they need, following
an execution's progress, and the per-task report), and ``devteam run`` itself.

Nothing here is on the request path: the gateway app never imports this package.
"""
