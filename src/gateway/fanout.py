"""The gateway's live stream: one LISTEN connection, many subscribers, replay from the table.

The hub keeps one LISTEN connection on ``devteam_stream``; a NOTIFY carries the rows its
transaction appended when they fit (else the last position written; see
pipeline/store/notifications.py). Notifications arrive in commit order, which is ``pos``
order (see pipeline/stream.py for why that order is safe): the hub publishes the rows a
NOTIFY carries when they follow the last one it published, and otherwise (a gap, a
position only, a reconnect, the poll every second) reads every row after the last one it
published from the table. Each frame is encoded once and offered to every subscriber
whose token and filters match. When the LISTEN connection drops, the hub reconnects with
backoff and catches up from the table, so subscribers lose nothing.

Each subscriber has a bounded queue. A subscriber that cannot keep up (queue full) is told
``resync`` and is then served from the table from its own cursor, so a slow browser never
costs unbounded memory and never slows anyone else down.

Streams are counted (``gateway.quota``): ``Hub.add`` refuses one too many for its user or
a customer it follows with ``TooManyStreams``; ``Hub.remove`` gives the place back,
whichever way the stream ended.

Retention prunes old notifications (``pipeline.retention``) and raises a watermark before
it does. Every replay page is read together with that watermark, in one statement (one
snapshot): a client whose cursor is behind it may have missed frames, so it is told
``resync`` (once per watermark), and the frames still kept follow.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import msgspec
import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from gateway.auth import Principal
from gateway.frames import (
    CONTROL_TYPES,
    ControlFrame,
    ControlPayload,
    ReplayComplete,
    Resync,
    StoredFrame,
    UpdateFrame,
)
from gateway.quota import StreamQuota
from pipeline import metrics
from pipeline.db import asyncpg_dsn
from pipeline.listen import listen_forever
from pipeline.prd import task_of, update_fields
from pipeline.store.notifications import PgNotifications, StreamRow, notified
from pipeline.stream import STREAM_CHANNEL, iso
from runner.settings import Settings

log = structlog.get_logger("devteam.fanout")

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
PAGE = 500
POLL_SECONDS = 1.0
MAX_NOTES = 10_000
"""NOTIFYs kept while the pump is busy; beyond that they are dropped and the table read."""
READ_BACKOFF = wait_exponential(multiplier=0.5, max=5.0)
"""Between attempts of a failed read of new rows: 0.5 s, doubling, at most 5 s."""
_READ_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)
QUERY_TIMEOUT = 10.0
"""No read may hang the stream: a connection left half-open by a network fault times out
and is replaced."""


_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Item:
    """One encoded notification and what filters need to know about it."""

    pos: int
    project_id: str
    customer_id: str
    type: str
    level: int
    data: bytes


RESYNC = Item(pos=-1, project_id="", customer_id="", type="resync", level=0, data=b"")
REPLAY_COMPLETE = "replay-complete"


def control_frame(payload: ControlPayload, project_id: str | None = None) -> bytes:
    """A frame that is not a stored notification (connection-established, resync, errors,
    pong; its type is its payload's); ``project_id`` (and its customer) when the socket is
    scoped to one project."""
    ts = iso(datetime.now(UTC))
    return _ENCODER.encode(
        ControlFrame(id=None, type=CONTROL_TYPES[type(payload)], ts=ts, timestamp=ts,
                     customer_id=project_id.split("/", 1)[0] if project_id else None,
                     project_id=project_id, execution_id=None, task_id=None, seq=None,
                     payload=payload)
    )


def _item(row: StreamRow) -> Item:
    ts = iso(row.created_at)
    payload = row.payload  # stored through its type (pipeline.frames)
    frame: UpdateFrame[str, msgspec.Raw] | StoredFrame[str, msgspec.Raw]
    if row.type == "execution-update":
        status, progress = update_fields(row.status, row.stage, row.task_id,
                                         row.completed, row.total)
        frame = UpdateFrame(
            id=str(row.pos), type=row.type, ts=ts, timestamp=ts,
            customer_id=row.customer_id, project_id=row.project_id,
            execution_id=row.execution_id, task_id=task_of(row.task_id),
            seq=row.seq, status=status, progress=progress, payload=payload)
    else:
        frame = StoredFrame(
            id=str(row.pos), type=row.type, ts=ts, timestamp=ts,
            customer_id=row.customer_id, project_id=row.project_id,
            execution_id=row.execution_id, task_id=task_of(row.task_id),
            seq=row.seq, payload=payload)
    return Item(
        pos=row.pos, project_id=row.project_id, customer_id=row.customer_id,
        type=row.type, level=LEVELS.get(row.level or "info", 20),
        data=_ENCODER.encode(frame),
    )

_RETENTION_REASON = ("frames up to {pruned} are no longer kept (retention): reload the "
                     "state you show; the frames still kept follow")


def retention_resync(cursor: int, pruned: int) -> Item:
    """The ``resync`` for a client whose cursor is older than what retention kept."""
    return Item(pos=cursor, project_id="", customer_id="", type="resync", level=0,
                data=_ENCODER.encode({"reason": _RETENTION_REASON.format(pruned=pruned),
                                      "prunedUpTo": str(pruned)}))


def replay_complete(cursor: int, replayed: int) -> Item:
    """The end of a connection's backlog: every frame up to ``cursor`` has been sent
    (``replayed`` of them from the table); the frames after it are live."""
    return Item(pos=cursor, project_id="", customer_id="", type=REPLAY_COMPLETE, level=0,
                data=str(replayed).encode())


def replay_complete_payload(item: Item) -> ReplayComplete:
    """The payload of a ``replay-complete`` item."""
    return ReplayComplete(cursor=str(item.pos), replayed=int(item.data))


def resync_payload(item: Item) -> Resync:
    """The payload of a ``resync`` item: where the client stands and why."""
    retention = msgspec.json.decode(item.data) if item.data else {}
    return Resync(since=str(item.pos),
                  reason=retention.get("reason", "client too slow; missed frames follow"),
                  pruned_up_to=retention.get("prunedUpTo"))


@dataclass(eq=False)
class Subscriber:
    """One socket's view of the stream: who may see what, and a bounded queue."""

    principal: Principal
    projects: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()
    min_level: int = 0
    queue_size: int = 2000
    queue: asyncio.Queue[Item] = field(init=False)
    overflowed: bool = False
    live_from: int | None = None
    """Set by ``Hub.subscribe`` without ``since``: the head it starts from, every frame
    after which was offered to this subscriber (no backlog to read)."""
    replay_to: int = 0
    """Set by ``Hub.subscribe`` with ``since``: the head committed when it subscribed. The
    backlog reaches at least that far, even where the hub has not published it yet."""

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.queue_size + 1)

    def may_see(self, item: Item) -> bool:
        if self.projects:
            if item.project_id not in self.projects:
                return False
        elif not self.principal.may_read(item.project_id):
            return False
        return True

    def wants(self, item: Item) -> bool:
        """Visibility plus the client's own filters (types, minimum log level)."""
        if not self.may_see(item):
            return False
        if self.types and item.type not in self.types:
            return False
        return not (item.type == "execution-log" and item.level < self.min_level)

    def offer(self, item: Item) -> None:
        if self.overflowed or not self.may_see(item):
            return
        if self.queue.qsize() >= self.queue_size:
            self.overflowed = True
            metrics.STREAM_FRAMES_DROPPED.inc(self.queue.qsize() + 1)
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)
            return
        self.queue.put_nowait(item)


async def _no_reset(_conn: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to reset on a read-only connection."""


class Hub:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dsn = asyncpg_dsn(settings.database.url)
        self.subscribers: set[Subscriber] = set()
        self.by_project: dict[str, set[Subscriber]] = {}
        self.by_customer: dict[str, set[Subscriber]] = {}
        self.everyone: set[Subscriber] = set()
        self.quota = StreamQuota(settings.gateway)
        self.published = 0
        self.pool: asyncpg.Pool | None = None
        self._wake = asyncio.Event()
        self._notes: deque[str] = deque()
        """NOTIFY payloads not yet handled, in the order they arrived."""
        self._catch_up = True
        """Read the table at the next wake-up (the LISTEN connection was (re)made)."""
        self._reader: asyncpg.Connection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.listen_connected = asyncio.Event()

    async def start(self) -> None:
        # Only read-only SELECTs run on these connections, so the per-release reset query
        # (a round trip on every pool.fetch) is skipped.
        self.pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=8, timeout=5,
                                              reset=_no_reset)
        self.published = await self.head()
        self._tasks = [asyncio.create_task(self._listen()), asyncio.create_task(self._pump())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.pool is not None:
            await self.pool.close()

    def _keys(self, sub: Subscriber) -> tuple[list[str], list[str], bool]:
        """Where a subscriber is indexed: exact projects, whole customers, or everything."""
        if sub.projects:
            return sorted(sub.projects), [], False
        if sub.principal.is_admin:
            return [], [], True
        projects, customers = sub.principal.scope()
        return list(projects or []), list(customers or []), False

    def add(self, sub: Subscriber) -> None:
        """Index ``sub`` for publishing; a new one is first counted against its user and
        customers (``TooManyStreams`` past their limits: then nothing is added)."""
        if sub not in self.subscribers:
            self.quota.take(sub)
            metrics.STREAM_CLIENTS.inc()
        self.subscribers.add(sub)
        projects, customers, everyone = self._keys(sub)
        for p in projects:
            self.by_project.setdefault(p, set()).add(sub)
        for c in customers:
            self.by_customer.setdefault(c, set()).add(sub)
        if everyone:
            self.everyone.add(sub)

    def remove(self, sub: Subscriber) -> None:
        """Forget ``sub`` and give back its places (idempotent: every way a stream ends
        calls it, some twice)."""
        if sub in self.subscribers:
            metrics.STREAM_CLIENTS.dec()
        self.quota.give_back(sub)
        self.subscribers.discard(sub)
        projects, customers, _ = self._keys(sub)
        for key, index in [(p, self.by_project) for p in projects] + [
            (c, self.by_customer) for c in customers
        ]:
            members = index.get(key)
            if members is not None:
                members.discard(sub)
                if not members:
                    del index[key]
        self.everyone.discard(sub)

    def _targets(self, project_id: str, customer_id: str) -> set[Subscriber]:
        targets = set(self.everyone)
        targets.update(self.by_project.get(project_id, ()))
        targets.update(self.by_customer.get(customer_id, ()))
        return targets

    # -- reading --------------------------------------------------------------------------
    async def head(self) -> int:
        """The last position committed (frames after it are "from now")."""
        assert self.pool is not None
        return await PgNotifications(self.pool).head(seconds=QUERY_TIMEOUT)

    async def read(self, after: int, upto: int, sub: Subscriber) -> tuple[list[Item], int]:
        """Rows ``after < pos <= upto`` this subscriber may see, oldest first, one page;
        and retention's watermark as of the same snapshot."""
        assert self.pool is not None
        projects, customers, everyone = self._keys(sub)  # the scope it is indexed by
        notifications = PgNotifications(self.pool)
        if everyone:
            rows, pruned = await notifications.page(after, upto, PAGE, seconds=QUERY_TIMEOUT)
        else:  # never both None: that would be every row
            rows, pruned = await notifications.page(after, upto, PAGE, projects=projects,
                                                    customers=customers or None,
                                                    seconds=QUERY_TIMEOUT)
        return [_item(row) for row in rows], pruned

    async def subscribe(self, sub: Subscriber, since: int | None) -> int:
        """Register ``sub`` and return its starting cursor (``since``, or now when None).

        Call it before telling the client it is connected: every frame committed after
        that moment is then either in the table past the cursor or offered to ``sub``.
        The caller must ``remove(sub)`` when done (``frames`` does, once iterated).
        Raises ``TooManyStreams`` (nothing registered) past the limits ``add`` checks.
        """
        if since is not None:
            head = await self.head()
            sub.replay_to = head
            self.add(sub)
            return min(since, head)
        # Without ``since`` the client is live from the head: ``sub`` is added before the
        # head is read, so every frame past it (committed after that read's snapshot, so
        # published after the add) is offered to ``sub``, and ``frames`` need not read
        # the table at all: nothing is replayed, however busy the stream.
        sub.live_from = None
        self.add(sub)
        try:
            head = await self.head()
        except BaseException:
            self.remove(sub)
            raise
        sub.live_from = head
        return head

    async def frames(self, sub: Subscriber, cursor: int) -> AsyncIterator[Item]:
        """Every frame for the subscribed ``sub`` after ``cursor``, in order, forever.

        Replays from the table up to what was committed when it subscribed, or what the
        hub had published if that is further, says so once (a ``replay-complete`` item:
        the client is live from here), then drains the live queue skipping anything
        already sent: no gap, no duplicate. A frame committed before the client connected
        is in its backlog even while the hub is still to publish it (its NOTIFY not yet
        heard): the queue's copy of it is then skipped.
        """
        told = 0  # the retention watermark this client was last told about
        replayed: int | None = 0  # frames sent from the table; None once told it is live
        try:
            while True:
                # a subscriber live from its cursor has every later frame in its queue
                target = (cursor if sub.live_from == cursor
                          else max(self.published, sub.replay_to))
                sub.live_from, sub.replay_to = None, 0
                while cursor < target:
                    page, pruned = await self.read(cursor, target, sub)
                    if pruned > cursor and pruned > told:
                        told = pruned
                        metrics.STREAM_RESYNCS.labels("retention").inc()
                        yield retention_resync(cursor, pruned)
                    for item in page:
                        cursor = item.pos
                        if sub.wants(item):
                            metrics.STREAM_FRAMES_SENT.inc()
                            if replayed is not None:
                                replayed += 1
                            yield item
                    if len(page) < PAGE:
                        cursor = target
                if replayed is not None:  # the backlog is over: once per connection
                    yield replay_complete(cursor, replayed)
                    replayed = None
                while True:
                    item = await sub.queue.get()
                    if item is RESYNC:
                        sub.overflowed = False
                        metrics.STREAM_RESYNCS.labels("overflow").inc()
                        yield Item(pos=cursor, project_id="", customer_id="", type="resync",
                                   level=0, data=b"")
                        break
                    if item.pos <= cursor:
                        continue
                    cursor = item.pos
                    if sub.wants(item):
                        metrics.STREAM_FRAMES_SENT.inc()
                        yield item
        finally:
            self.remove(sub)

    # -- background ---------------------------------------------------------------------
    async def _pump(self) -> None:
        """Wake on NOTIFY (or every POLL_SECONDS); offer the rows the NOTIFYs carry while
        they follow on from the last row published, else read the new rows and offer them.

        It reads on a connection of its own: no pool slot to wait for behind replays, and
        one round trip per read. A failed read drops that connection and is retried on a
        new one (tenacity, ``READ_BACKOFF``) until it succeeds."""
        try:
            while True:
                if not self._notes and not self._catch_up:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_SECONDS):
                            await self._wake.wait()
                self._wake.clear()
                if not self._catch_up and self._publish_notified():
                    continue
                self._catch_up = False
                async for attempt in AsyncRetrying(
                    retry=retry_if_exception_type(_READ_ERRORS), wait=READ_BACKOFF,
                    before_sleep=self._read_failed,
                ):
                    with attempt:
                        await self._read_new()
        finally:
            self._drop_reader()

    async def _read_new(self) -> None:
        if self._reader is None or self._reader.is_closed():
            self._reader = await asyncpg.connect(self.dsn, timeout=5)
        await self._publish_new(self._reader)

    def _read_failed(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        log.warning("fanout.read_failed", error=type(exc).__name__,
                    retry_in=state.next_action.sleep if state.next_action else None)
        self._drop_reader()

    def _drop_reader(self) -> None:
        if self._reader is not None:
            self._reader.terminate()
        self._reader = None

    async def _publish_new(self, conn: asyncpg.Connection) -> None:
        while True:
            rows = await PgNotifications(conn).after(self.published, PAGE,
                                                     seconds=QUERY_TIMEOUT)
            self._publish(rows)
            if len(rows) < PAGE:
                return

    def _publish_notified(self) -> bool:
        """Offer the rows the pending NOTIFYs carry, in order, while each batch follows on
        from the last row published; False when the table must be read (no NOTIFY: a
        poll; one carrying only its position; a gap)."""
        if not self._notes:
            return False
        while self._notes:
            last, rows = notified(self._notes.popleft())
            if last <= self.published:
                continue  # already read from the table
            if not rows or rows[0].pos != self.published + 1:
                return False
            self._publish(rows)
        return True

    def _publish(self, rows: list[StreamRow]) -> None:
        now = datetime.now(UTC)
        for row in rows:
            metrics.STREAM_LAG.observe(max(0.0, (now - row.created_at).total_seconds()))
            self.published = row.pos
            targets = self._targets(row.project_id, row.customer_id)
            if targets:  # a frame nobody follows is not built (most, on a busy gateway)
                item = _item(row)
                for sub in targets:
                    sub.offer(item)

    async def _listen(self) -> None:
        await listen_forever(self.dsn, STREAM_CHANNEL, self._woken, name="fanout",
                             connected=self._connected, notified=self._notified)

    def _woken(self) -> None:
        """The LISTEN connection is (re)made: catch up from the table."""
        self._catch_up = True
        self._wake.set()

    def _notified(self, payload: str) -> None:
        if len(self._notes) >= MAX_NOTES:  # the pump is stuck reading: the table will do
            self._notes.clear()
            self._catch_up = True
        self._notes.append(payload)
        self._wake.set()

    def _connected(self, up: bool) -> None:
        if up:
            self.listen_connected.set()
        else:
            self.listen_connected.clear()
