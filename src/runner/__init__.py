"""Runner domain: task lists, git workspaces, the coding tool, the sandbox, verification.

Plain Python with no web or queue code; the pipeline and the gateway call it, it calls
nobody back.
"""
