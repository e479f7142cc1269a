"""Settings a test's processes (and the test itself) run with."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from runner.settings import reset_settings_cache


def use_settings(env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                 values: Mapping[str, str]) -> dict[str, str]:
    """Put ``DEVTEAM_*`` ``values`` in the environment of this test (settings read afresh)
    and of the service processes it starts (``env``); returns ``env``."""
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    env.update(values)
    reset_settings_cache()
    return env
