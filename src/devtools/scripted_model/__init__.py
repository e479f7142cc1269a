"""The scripted language model: an OpenAI-compatible server answering with scripted edits.

It is the one stand-in of the system (tests and the demo run real Aider against it).
"""

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
