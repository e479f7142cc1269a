"""The scripted language model: an OpenAI-compatible server answering with scripted edits.

It is the one stand-in of the system (tests and the demo run real Aider against it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runner.lazy import exports

if TYPE_CHECKING:
    from devtools.scripted_model.script import (
        Edit,
        Script,
        ScriptError,
        TaskScript,
        load_script,
        parse_script,
        render_reply,
    )
    from devtools.scripted_model.server import (
        RecordedRequest,
        Reply,
        ScriptedModel,
        ScriptedModelServer,
    )

_HOME = {
    "Edit": "script", "Script": "script", "ScriptError": "script", "TaskScript": "script",
    "load_script": "script", "parse_script": "script", "render_reply": "script",
    "RecordedRequest": "server", "Reply": "server", "ScriptedModel": "server",
    "ScriptedModelServer": "server",
}
"""Where each export lives: the package imports a module (the server brings Litestar and
uvicorn) when one of its names is first used, so ``devteam`` commands that never run the
scripted model do not load it."""

__all__ = [
    "Edit",
    "RecordedRequest",
    "Reply",
    "Script",
    "ScriptError",
    "ScriptedModel",
    "ScriptedModelServer",
    "TaskScript",
    "load_script",
    "parse_script",
    "render_reply",
]


if not TYPE_CHECKING:  # type checkers see the imports above, and so still catch a typo
    __getattr__ = exports(__name__, _HOME)
