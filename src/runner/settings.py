"""One settings object for the whole service, read from ``DEVTEAM_*`` variables once.

Each area is a frozen msgspec Struct; a field ``url`` of area ``database`` is read from
``DEVTEAM_DATABASE_URL``. Defaults work on the local stack that ``make services`` starts,
so a developer sets nothing. The field docstrings below are the configuration reference:
``devteam config --markdown`` prints them as the README's table, and a test keeps the two
in step.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout this package runs from (``src/runner/settings.py`` → two levels up)."""


class DatabaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str = "postgresql+asyncpg://devteam@127.0.0.1:55432/devteam"
    """SQLAlchemy URL of the Postgres database (asyncpg driver)."""
    pool_size: int = 10
    """Connections each process keeps open to Postgres."""
    writers: int = 4
    """Transactions each process runs at once (at most ``pool_size``); more wait their
    turn in the process, first come, first served. Single reads are not limited."""


class RedisSettings(msgspec.Struct, frozen=True, kw_only=True):
    url: str = "redis://127.0.0.1:56379/0"
    """Redis URL of the Dramatiq broker."""
    namespace: str = "devteam"
    """Prefix of every Redis key of the broker (deployments sharing a Redis stay apart)."""


class JwtSettings(msgspec.Struct, frozen=True, kw_only=True):
    secret: str = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - local stack only
    """HS256 shared secret. The default is for the local stack only; set it in production."""
    public_key: str = ""
    """RS256 public key (PEM text or a path to a PEM file). When set, RS256 is required."""
    private_key: str = ""
    """RS256 private key (PEM text or path), only for minting development tokens."""
    issuer: str = "devteam"
    """Required ``iss`` claim."""
    leeway_seconds: int = 10
    """Clock skew tolerated when checking ``exp`` and ``nbf``."""


class WorkspaceSettings(msgspec.Struct, frozen=True, kw_only=True):
    root: str = ".devteam/workspaces"
    """Root of per-customer caches and per-execution working copies (relative to the checkout)."""
    max_age_hours: int = 24
    """Working copies older than this are removed by the reaper."""
    allowed_file_roots: str = ""
    """Colon-separated directories from which ``file://`` repositories may be used.
    Empty means ``file://`` URLs are refused (production)."""
    git_credentials: str = ""
    """Path to a TOML file of git credentials, each bound to customers and to the URL
    prefixes it may be sent to (never in the database)."""
    author_name: str = "DevTeam Runner"
    """Author name of the commits the pipeline makes."""
    author_email: str = "runner@devteam.local"
    """Author email of the commits the pipeline makes."""


class GitSettings(msgspec.Struct, frozen=True, kw_only=True):
    customer_repos: str = ""
    """Repository URL prefixes each customer may use, checked before any network request:
    ``acme=https://github.com/acme/ git@github.com:acme/;globex=https://gitlab.com/globex/``
    (``*=`` applies to every customer). A prefix is exact in scheme, host and port (none:
    the scheme's default) and matches whole path segments. Empty: no network repository
    is accepted (only ``file://`` under ``DEVTEAM_WORKSPACE_ALLOWED_FILE_ROOTS``)."""
    private_hosts: str = ""
    """Loopback, link-local or private destinations repositories may live on: host names,
    addresses or networks (``git.corp.internal 10.20.0.0/16 127.0.0.1``). A host that
    resolves to any other such address is refused; ``http://`` is accepted only for these.
    Empty: none."""


class SandboxSettings(msgspec.Struct, frozen=True, kw_only=True):
    image: str = "devteam-runner:latest"
    """Image of the per-task verification containers."""
    base_image: str = "devteam-base:bookworm"
    """Locally built base image the runner image is built from when no registry is reachable."""
    docker_host: str = ""
    """Docker endpoint (``unix://`` or ``tcp://``); empty: ``DOCKER_HOST`` or the local socket."""
    cpus: float = 1.0
    """Default CPU quota of a task container (a project's quota overrides it)."""
    memory_mb: int = 2048
    """Default memory limit of a task container, MiB."""
    pids: int = 512
    """Default process limit of a task container."""
    tmpfs_mb: int = 256
    """Size of the writable ``/tmp`` in a task container, MiB."""
    max_containers: int = 16
    """Task containers running at once across all customers."""
    max_containers_per_customer: int = 4
    """Task containers running at once for one customer."""
    command_timeout_seconds: int = 900
    """Default timeout of one verification command."""
    container_ttl_seconds: int = 6 * 3600
    """Expiry label on each container; the reaper removes containers past it."""
    deployment: str = ""
    """This deployment's name on a Docker engine others may share (staging and production,
    two teams): every container and volume carries it, and a reaper removes only its own.
    Empty: derived from the database URL (host, port and database name)."""


class SetupSettings(msgspec.Struct, frozen=True, kw_only=True):
    allow: str = (
        "registry.npmjs.org,registry.yarnpkg.com,repo.yarnpkg.com,pypi.org,files.pythonhosted.org"
    )
    """Hosts setup containers may reach through the egress proxy (comma-separated host
    names; ``*.example.org`` allows every subdomain). The public npm and Python indexes."""
    allow_extra: str = ""
    """More hosts for this deployment (a private registry, a git host), added to ``allow``."""
    customer_allow: str = ""
    """Hosts for single customers: ``acme=npm.acme.internal git.acme.io;globex=pypi.globex.io``."""
    ports: str = "443"
    """Ports the proxy may open tunnels to (comma-separated)."""
    ca_bundle: str = ""
    """CA certificates (PEM) sandboxes trust for TLS: pip, npm, node, git, curl. Empty: the
    host's system bundle (``/etc/ssl/certs/ca-certificates.crt`` on Debian), so a machine
    whose outbound TLS is re-signed by a local CA needs no configuration."""
    tinyproxy_bin: str = "tinyproxy"
    """The forward proxy setup egress goes through (on the Docker engine's host)."""
    socat_bin: str = "socat"
    """Joins the proxy to the unix socket bind-mounted into setup containers."""
    cache_max_gb: float = 20.0
    """Dependency caches one customer may keep, in GiB; the oldest go first past it."""
    cache_per_project: int = 3
    """Dependency caches kept per project (different lockfiles); the oldest go first."""
    cache_max_age_hours: int = 7 * 24
    """Dependency caches older than this are removed by the reaper."""
    timeout_seconds: int = 1800
    """Longest one setup command may run."""


class VerifySettings(msgspec.Struct, frozen=True, kw_only=True):
    protected: str = ".github/workflows/**,.gitlab-ci.yml,.circleci/**,Jenkinsfile"
    """Paths no task may change, besides the task list, ``task_outcomes.md`` and
    ``.devteam.toml`` (always protected): comma-separated; ``dir/**`` is a tree, a bare name
    matches anywhere. A change touching one pauses for a person with the diff shown."""
    baseline: bool = True
    """Verify the unchanged base once per execution (again when its dependencies change)
    before any model call; a base that cannot pass pauses with that as the headline."""


class ModelSettings(msgspec.Struct, frozen=True, kw_only=True):
    name: str = "openai/scripted"
    """Model Aider uses (any model name Aider accepts)."""
    api_base: str = "http://127.0.0.1:18080/v1"
    """OpenAI-compatible endpoint (``OPENAI_API_BASE`` for Aider)."""
    api_key: str = "sk-scripted-local"
    """API key for the model endpoint; treated as a secret everywhere."""
    edit_format: str = ""
    """Aider edit format (``whole``, ``diff``...); empty lets Aider choose."""
    input_cost_per_million: float = 0.0
    """USD per million tokens sent to the model, for the cost Aider reports (its model
    metadata); 0 leaves it to Aider's own price list, which knows no self-hosted model
    (then usage records no cost)."""
    output_cost_per_million: float = 0.0
    """USD per million tokens received from the model (see ``input_cost_per_million``)."""


class AiderSettings(msgspec.Struct, frozen=True, kw_only=True):
    bin: str = ".venv-aider/bin/aider"
    """The ``aider`` executable, in its own environment (relative to the checkout)."""
    timeout_seconds: int = 600
    """Hard timeout of one Aider run."""
    memory_mb: int = 2048
    """Address space one Aider process may use, MiB (``RLIMIT_AS``); past it Aider fails
    and the round is a ``resource_limit`` error naming this setting."""
    cpu_seconds: int = 300
    """CPU time one Aider process may use (``RLIMIT_CPU``); past it Aider is killed and
    the round is a ``resource_limit`` error naming this setting."""


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    """Address ``devteam serve`` binds."""
    port: int = 8000
    """Port ``devteam serve`` binds."""
    max_body_bytes: int = 1_048_576
    """Largest request body accepted; larger gets 413."""
    ws_queue_size: int = 2000
    """Frames buffered per live subscriber before it is told to ``resync``."""
    ws_ping_seconds: float = 20.0
    """Interval of server pings on WebSockets and SSE."""
    streams_per_user: int = 20
    """Live streams (WebSocket and SSE together) one user may have open at once; one more
    is refused (SSE 429 with ``Retry-After``, WebSocket close 1013) until one closes.
    Counted by each gateway process (``serve --workers``) on its own."""
    streams_per_customer: int = 500
    """Live streams following one customer's projects open at once, all its users
    together; one more is refused likewise. A stream counts for each customer it follows:
    those of its ``projectId`` values, else of its token's grants."""
    header_timeout_seconds: float = 10.0
    """A request's line and headers must arrive within this time of the connection opening
    (or of the request's first byte on a kept-alive one): past it 408 and closed."""
    body_timeout_seconds: float = 30.0
    """A request's body must arrive within this time of its headers: past it the connection
    is closed."""
    cors_origins: str = ""
    """Comma-separated origins allowed by CORS (empty: same origin only)."""
    idempotency_lock_seconds: float = 60.0
    """How long a claimed ``Idempotency-Key`` stays locked unless renewed: while its
    operation runs the claim is renewed every third of this, so a retry answers 409 however
    long it takes; after a crash a retry takes over once it has passed."""


class PipelineSettings(msgspec.Struct, frozen=True, kw_only=True):
    worker_concurrency: int = 4
    """Stage actors running at once per worker process."""
    worker_poll_ms: int = 20
    """Longest wait between two polls of Redis by a stopping worker, and by a consumer of
    any queue other than the stages' (the stages' consumer waits for wake-ups)."""
    worker_idle_poll_ms: int = 1000
    """Longest wait between two polls of Redis by a worker's stage consumer: the relay
    publishes a wake-up with every stage it sends (and a worker thread finishing a stage
    wakes it), so this only bounds how late a stage sent without one starts (a listener
    reconnecting, a dead worker's stage handed back)."""
    relay_poll_seconds: float = 1.0
    """Relay polling interval when no NOTIFY arrives."""
    stage_lease_seconds: int = 30
    """A stage claim expires this long after its last heartbeat (a dead worker's stage re-runs)."""
    dispatch_grace_seconds: int = 60
    """A dispatched command that no worker claimed within this time is sent again."""
    max_inflight_per_customer: int = 4
    """Stage commands of one customer in flight at once (fair scheduling)."""
    verify_rounds: int = 3
    """IMPLEMENT→VERIFY rounds per task (the first plus retries)."""
    max_resolution_tasks: int = 3
    """Error-resolution tasks injected for one failing task before human review."""
    stage_retries: int = 5
    """Retries of a stage failing with a transient or infrastructure error."""
    stage_retry_max_seconds: float = 30.0
    """Longest wait before a retry (waits double from 2 s: 2, 4, 8, 16, 30 s ride out a
    dependency restart of about a minute)."""
    log_flush_ms: int = 150
    """Log lines are batched into one notification at most this often."""
    log_batch_lines: int = 200
    """Largest number of log lines in one notification."""


class StackSettings(msgspec.Struct, frozen=True, kw_only=True):
    dir: str = ".devteam"
    """Data, logs and sockets of the local stack (relative to the checkout)."""
    pg_port: int = 55432
    """Port of the project-local Postgres cluster."""
    redis_port: int = 56379
    """Port of the project-local Redis server."""
    pg_bin: str = ""
    """Directory of the Postgres server binaries; empty finds the newest installed."""


class LogSettings(msgspec.Struct, frozen=True, kw_only=True):
    level: str = "info"
    """Minimum level of service logs."""
    format: str = "json"
    """``json`` (one object per line) or ``console``."""


class LimitsSettings(msgspec.Struct, frozen=True, kw_only=True):
    log_bytes_per_stage: int = 2 * 1024 * 1024
    """Bytes of output one stage run may add to the live stream; past it lines are dropped,
    with one marker line when it is reached and the count at the stage's end."""
    log_lines_per_stage: int = 5000
    """Output lines one stage run may add to the live stream (dropped past it, likewise)."""
    log_line_bytes: int = 2000
    """Longest output line kept (UTF-8 bytes); a longer one is cut, with a marker."""
    output_tail_bytes: int = 64 * 1024
    """End of each command's output kept in its result (feedback, error records)."""
    stage_result_bytes: int = 512 * 1024
    """Largest stage result stored (JSON); longer texts in it are cut in the middle, with
    a marker."""
    task_context_bytes: int = 2 * 1024 * 1024
    """Largest ``task_context`` of an event (``GET /events/{id}``), cut likewise."""
    max_commands: int = 20
    """Commands a ``.devteam.toml`` may list, all tables together; more is a config error."""
    repo_bytes: int = 128 * 1024 * 1024
    """Bytes in the files of a commit the service checks out (measured from git objects
    before the checkout, so a small compressed repository cannot expand past it); more is
    a config error naming this setting."""
    repo_files: int = 50_000
    """Files, links and directories in a commit the service checks out; more is a config
    error naming this setting."""
    repo_depth: int = 64
    """Directory levels in a commit the service checks out; deeper is a config error
    naming this setting."""
    model_file_bytes: int = 1024 * 1024
    """Largest task file given to the coding tool (and so to the model); a larger one is a
    config error naming this setting, before the tool starts."""


class RetentionSettings(msgspec.Struct, frozen=True, kw_only=True):
    days: int = 30
    """Notifications, stage runs and stage outputs older than this are pruned by the reaper;
    each execution, its task summaries, its errors and its ``error`` and ``completion``
    frames are kept. 0 keeps everything."""
    batch_rows: int = 5000
    """Rows the reaper prunes per transaction."""


class MetricsSettings(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool = True
    """Expose Prometheus metrics: the gateway's ``/metrics`` (no token needed) and a port
    of each relay and worker. ``false``: no ``/metrics`` and no metrics ports."""
    address: str = ""
    """``host:port`` to serve the gateway's ``/metrics`` on instead of the API's address
    (e.g. ``127.0.0.1:9100``, reachable by Prometheus but not by API clients). Empty: the
    API's own address."""
    host: str = "127.0.0.1"
    """Address the relays' and workers' metrics ports listen on (``0.0.0.0`` in containers
    scraped from outside)."""
    relay_port: int = 9101
    """Metrics port of a relay (``/metrics``); 0: none. A port already taken is logged and
    the relay runs without one."""
    worker_port: int = 9102
    """Metrics port of a worker (``/metrics``); 0: none."""
    refresh_seconds: float = 5.0
    """How often each relay reads the fleet gauges (outbox backlog and age, executions by
    status, containers per customer) from Postgres."""
    multiproc_dir: str = ".devteam/metrics"
    """Where the processes of a ``devteam serve --workers N`` gateway keep their metric
    values (``prometheus-client`` multiprocess mode; emptied at start)."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    redis: RedisSettings = msgspec.field(default_factory=RedisSettings)
    jwt: JwtSettings = msgspec.field(default_factory=JwtSettings)
    workspace: WorkspaceSettings = msgspec.field(default_factory=WorkspaceSettings)
    git: GitSettings = msgspec.field(default_factory=GitSettings)
    sandbox: SandboxSettings = msgspec.field(default_factory=SandboxSettings)
    setup: SetupSettings = msgspec.field(default_factory=SetupSettings)
    verify: VerifySettings = msgspec.field(default_factory=VerifySettings)
    model: ModelSettings = msgspec.field(default_factory=ModelSettings)
    aider: AiderSettings = msgspec.field(default_factory=AiderSettings)
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    pipeline: PipelineSettings = msgspec.field(default_factory=PipelineSettings)
    stack: StackSettings = msgspec.field(default_factory=StackSettings)
    log: LogSettings = msgspec.field(default_factory=LogSettings)
    limits: LimitsSettings = msgspec.field(default_factory=LimitsSettings)
    retention: RetentionSettings = msgspec.field(default_factory=RetentionSettings)
    metrics: MetricsSettings = msgspec.field(default_factory=MetricsSettings)

    def path(self, value: str) -> Path:
        """Resolve a path setting: absolute as given, relative to the checkout otherwise."""
        p = Path(value)
        return p if p.is_absolute() else PROJECT_ROOT / p

    def secret_values(self) -> list[str]:
        """Every configured value that must never appear in any output."""
        values = [self.jwt.secret, self.jwt.private_key, self.model.api_key]
        return [v for v in values if v and len(v) >= 6]


_AREAS: dict[str, type[msgspec.Struct]] = {f.name: f.type for f in msgspec.structs.fields(Settings)}


class SettingsError(ValueError):
    """A ``DEVTEAM_*`` variable has a value of the wrong type."""


def env_name(area: str, field: str) -> str:
    return f"DEVTEAM_{area}_{field}".upper()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from ``environ`` (default: the process environment)."""
    env = os.environ if environ is None else environ
    raw: dict[str, dict[str, str]] = {}
    for area, struct in _AREAS.items():
        for field in msgspec.structs.fields(struct):
            name = env_name(area, field.name)
            if name in env:
                raw.setdefault(area, {})[field.name] = env[name]
    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(f"invalid DEVTEAM_* setting: {exc}") from None


@functools.cache
def get_settings() -> Settings:
    """The process's settings, read from the environment the first time they are needed."""
    return load_settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests that change the environment call this)."""
    get_settings.cache_clear()


def describe() -> Iterator[tuple[str, Any, str]]:
    """Yield ``(variable, default, description)`` for every setting, in declaration order."""
    docs = _field_docs()
    for area, struct in _AREAS.items():
        defaults = struct()
        for field in msgspec.structs.fields(struct):
            yield (
                env_name(area, field.name),
                getattr(defaults, field.name),
                docs.get((struct.__name__, field.name), ""),
            )


def _field_docs() -> dict[tuple[str, str], str]:
    """Read the attribute docstrings of this module (the string under each field)."""
    import ast

    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    docs: dict[tuple[str, str], str] = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for i, stmt in enumerate(body[:-1]):
            nxt = body[i + 1]
            if (
                isinstance(stmt, ast.AnnAssign)
                and isinstance(stmt.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[(node.name, stmt.target.id)] = " ".join(nxt.value.value.split())
    return docs
