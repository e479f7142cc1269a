"""``devteam`` loads what a command needs when that command runs.

Every command used to import the whole service first (Litestar, uvicorn, the Docker SDK,
httpx, websockets, SQLAlchemy, Redis, the scripted model's server): about 0.9 s of CPU
and 23-32 MB before a worker or relay began, and before each ``devteam ping``, which
compose runs every 15 s as the relay's and the worker's health check.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import jwt
import pytest
from typer.testing import CliRunner

from gateway.cli import app

HEAVY = ("litestar", "uvicorn", "docker", "httpx", "websockets", "sqlalchemy", "redis",
         "jwt", "asyncpg", "pygit2", "dramatiq", "devtools.scripted_model.server",
         "runner.sandbox.engine")


def loaded_after(statement: str) -> list[str]:
    """Which of ``HEAVY`` a fresh interpreter holds after running ``statement``."""
    probe = (f"import sys\n{statement}\n"
             f"import json; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=120, check=True)
    loaded: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return loaded


def test_the_command_line_itself_loads_none_of_the_service() -> None:
    assert loaded_after("import gateway.cli") == []


def test_a_package_s_names_still_load_on_first_use() -> None:
    assert {"docker", "runner.sandbox.engine"} <= set(
        loaded_after("from runner.sandbox import DockerSandbox"))
    assert "devtools.scripted_model.server" in loaded_after(
        "from devtools.scripted_model import ScriptedModelServer")
    from devtools import scripted_model
    from runner import sandbox
    from runner.sandbox.sandbox import DockerSandbox

    assert sandbox.DockerSandbox is DockerSandbox
    with pytest.raises(AttributeError, match="has no attribute 'Nothing'"):
        _ = sandbox.Nothing
    with pytest.raises(AttributeError):
        _ = scripted_model.Nothing


@pytest.mark.parametrize("package", ["runner.sandbox", "devtools.scripted_model"])
def test_every_name_a_lazy_package_exports_loads_from_where_it_says(package: str) -> None:
    module = importlib.import_module(package)
    homes: dict[str, str] = module._HOME
    assert set(homes) == set(module.__all__)
    for name in module.__all__:
        home = importlib.import_module(f"{package}.{homes[name]}")
        assert getattr(module, name) is getattr(home, name), name


@pytest.mark.parametrize("since", ["²", "٣", "1²", "-1", "12345678901234567890"])
def test_watch_refuses_a_cursor_that_is_not_ascii_digits_before_connecting(since: str) -> None:
    token = jwt.encode({"sub": "alice"}, "k" * 32, algorithm="HS256")
    result = CliRunner().invoke(app, ["watch", "--token", token, "--since", since,
                                      "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2, result.output
    assert "a cursor is a frame id (ASCII digits)" in result.output
