"""schemathesis hooks for the gateway fuzz run (loaded through ``SCHEMATHESIS_HOOKS``).

There is no network here, so a project pointed at an internet URL can only answer 503
(remote unreachable: correct, but not what the run is about). Every ``repositoryUrl``
the fuzzer sends to ``initialize`` or ``POST /events`` that is a valid URL is replaced by
the sample project's local bare remote (``DEVTEAM_FUZZ_REPOSITORY``); invalid ones are left
alone so the validation paths are still exercised. ``/repository/validate`` keeps its
URLs: an unreachable remote is a result there.
"""

from __future__ import annotations

import os
import re
from typing import Any

import schemathesis

_VALID = re.compile(r"^(https?://|ssh://|file://|git@)\S+$")


def _local(value: Any) -> Any:
    if isinstance(value, str) and _VALID.match(value) and len(value) <= 2000:
        return os.environ["DEVTEAM_FUZZ_REPOSITORY"]
    return value


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    if case.path == "/api/devteam/automation/initialize" and "repositoryUrl" in body:
        body["repositoryUrl"] = _local(body["repositoryUrl"])
    data = body.get("data")
    if case.path == "/events" and isinstance(data, dict) and "repositoryUrl" in data:
        data["repositoryUrl"] = _local(data["repositoryUrl"])
