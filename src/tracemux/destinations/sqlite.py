"""SQLiteStore: the embedded default destination, and the reader behind the CLI and viewer.

Writes happen on the export thread only, one transaction per batch (stdlib ``sqlite3``,
WAL journal): a killed process leaves a readable database holding every committed batch.
Reads (``runs``, ``run``, ``spans``) open their own short-lived connections, from any
thread or process. The store prunes itself on the export thread, keeping the newest
``max_runs`` runs and nothing older than ``max_age_days``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import orjson
import platformdirs

from tracemux.destinations.base import Destination, ExportError
from tracemux.model import Record, RunInfo, RunStart, SpanRecord, format_span_id

log = logging.getLogger(__name__)
_T = TypeVar("_T")

SCHEMA_VERSION = 7

#: A run's status: ``running`` until its root span ends; then ``error`` when the run
#: itself failed (its root span), ``partial`` when it went on to the end although one or
#: more of its spans failed, else ``ok``. The error filter (``status="error"``) finds
#: every run where something failed: ``error``, ``partial``, and running runs that
#: already have a failed span.
RUN_STATUSES = ("running", "ok", "partial", "error")
#: The status filters :meth:`SQLiteStore.runs` takes: the statuses, and ``failed`` (only
#: the runs that failed as a whole).
RUN_STATUS_FILTERS = (*RUN_STATUSES, "failed")
#: The longest search text the store takes (longer raises ``ValueError``).
MAX_SEARCH_CHARS = 1000
_MAX_IDS_PER_QUERY = 500
#: How :meth:`SQLiteStore.runs_page` can sort: name -> the indexed expression.
RUN_SORTS = {
    "start": "start_ns",
    "duration": "COALESCE(end_ns - start_ns, -1)",  # running runs count as shortest
    "tokens": "(input_tokens + output_tokens)",
    "spans": "span_count",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id        TEXT PRIMARY KEY,
    trace_id      TEXT NOT NULL,
    name          TEXT,
    user_id       TEXT,
    session_id    TEXT,
    project       TEXT,
    tags          TEXT,
    metadata      TEXT,
    start_ns      INTEGER NOT NULL,
    end_ns        INTEGER,
    status        TEXT NOT NULL DEFAULT 'running',
    span_count    INTEGER NOT NULL DEFAULT 0,
    error_count   INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    inputs        TEXT,
    outputs       TEXT,
    error         TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (start_ns DESC);
CREATE TABLE IF NOT EXISTS spans (
    run_id    TEXT NOT NULL,
    span_id   TEXT NOT NULL,
    parent_id TEXT,
    name      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    start_ns  INTEGER NOT NULL,
    end_ns    INTEGER NOT NULL,
    status    TEXT NOT NULL,
    inputs    TEXT,
    outputs   TEXT,
    metadata  TEXT,
    logs      TEXT,
    usage     TEXT,
    model     TEXT,
    error     TEXT,
    PRIMARY KEY (run_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS spans_by_run_time ON spans (run_id, start_ns);
"""

# Each write is "INSERT ... VALUES (row), (row), ... [ON CONFLICT ...]" with many rows per
# statement (see _insert_rows): (statement head, tail after the values, columns per row).
# A span written twice (the same run and span id) is kept as first written: the search
# index (span_text, fed from the spans table by rowid) then never holds a stale row.
_SPANS = (
    """INSERT OR IGNORE INTO spans
    (run_id, span_id, parent_id, name, kind, start_ns, end_ns, status,
     inputs, outputs, metadata, logs, usage, model, error)""",
    "",
    15,
)
# A batch writes each of its runs once (see store_rows): the run's identity and start, what
# its spans in this batch add to the counts, and, when its root span is in the batch, how
# it ended. The identity is replaced only when the batch holds the run's start (a later
# run that reuses the id renames it; a late span of the first one does not).
_RUN_UPDATE = """span_count = runs.span_count + excluded.span_count,
    error_count = runs.error_count + excluded.error_count,
    input_tokens = runs.input_tokens + excluded.input_tokens,
    output_tokens = runs.output_tokens + excluded.output_tokens,
    start_ns = CASE WHEN excluded.end_ns IS NULL THEN MIN(runs.start_ns, excluded.start_ns)
                    ELSE excluded.start_ns END,
    end_ns = COALESCE(excluded.end_ns, runs.end_ns),
    status = CASE WHEN excluded.end_ns IS NULL THEN
                      CASE WHEN runs.status = 'ok' AND excluded.error_count > 0 THEN 'partial'
                           ELSE runs.status END
                  WHEN excluded.status = 'ok' AND runs.error_count > 0 THEN 'partial'
                  ELSE excluded.status END,
    inputs = CASE WHEN excluded.end_ns IS NULL THEN runs.inputs ELSE excluded.inputs END,
    outputs = CASE WHEN excluded.end_ns IS NULL THEN runs.outputs ELSE excluded.outputs END,
    error = CASE WHEN excluded.end_ns IS NULL THEN runs.error ELSE excluded.error END"""
_RUN_IDENTITY = """name = excluded.name, user_id = excluded.user_id,
    session_id = excluded.session_id, project = excluded.project, tags = excluded.tags,
    metadata = excluded.metadata,"""
_RUN_HEAD = """INSERT INTO runs (run_id, trace_id, name, user_id, session_id, project, tags,
    metadata, start_ns, end_ns, status, span_count, error_count, input_tokens, output_tokens,
    inputs, outputs, error)"""
_RUN_STARTED = (_RUN_HEAD, f"ON CONFLICT (run_id) DO UPDATE SET {_RUN_IDENTITY} {_RUN_UPDATE}", 18)
_RUN_CONTINUED = (_RUN_HEAD, f"ON CONFLICT (run_id) DO UPDATE SET {_RUN_UPDATE}", 18)
_PADDED_SIZES = (4, 16, 64, 256, 1024)  # rows per statement below the largest (see _insert_rows)
_MAX_ROWS_PER_STATEMENT = 2048


def _max_variables(conn: sqlite3.Connection) -> int:
    getlimit = getattr(conn, "getlimit", None)  # Python 3.11+
    if getlimit is not None:
        return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    return 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


@functools.lru_cache(maxsize=64)
def _values_sql(head: str, tail: str, columns: int, rows: int) -> str:
    row = "(" + ",".join("?" * columns) + ")"
    return f"{head} VALUES {','.join([row] * rows)} {tail}"


@functools.lru_cache(maxsize=64)
def _padded_sql(head: str, tail: str, columns: int, rows: int) -> str:
    """``rows`` rows of values, of which those whose first column is NULL (the padding) are
    not written. (The WHERE also keeps an ON CONFLICT tail from being read as a join.)"""
    row = "(" + ",".join("?" * columns) + ")"
    values = ",".join([row] * rows)
    return f"{head} SELECT * FROM (VALUES {values}) WHERE column1 IS NOT NULL {tail}"


def _statement_sizes(columns: int, max_variables: int) -> tuple[int, ...]:
    """The row counts of the statements :func:`_insert_rows` writes with, smallest first."""
    largest = min(_MAX_ROWS_PER_STATEMENT, max_variables // columns)
    return (*(size for size in _PADDED_SIZES if size < largest), largest)


def _insert_rows(
    conn: sqlite3.Connection,
    statement: tuple[str, str, int],
    rows: Sequence[Sequence[Any]],
    max_variables: int,
) -> None:
    """Write ``rows`` with as few statements as the variable limit allows: one per table
    for a whole batch, its rows padded with NULL rows up to one of a few sizes (so that
    each statement's text is compiled once and then cached; compiling costs ~3.5 µs a row).

    Few statements, because each one gives the GIL away (around SQLite's work) and waits
    to get it back: up to the switch interval (5 ms) when an application thread is busy,
    and longer with several. Not ``executemany`` (once per row), nor statements of a few
    fixed sizes in turn (8 per table for 2,000 rows): a batch took seconds that way under
    busy threads, all of it holding the write lock and the fork guard.
    """
    head, tail, columns = statement
    sizes = _statement_sizes(columns, max_variables)
    largest = sizes[-1]
    chain = itertools.chain.from_iterable
    for start in range(0, len(rows), largest):
        chunk = rows[start : start + largest]
        size = next(s for s in sizes if s >= len(chunk))
        values = list(chain(chunk))
        if size > len(chunk):
            values += [None] * ((size - len(chunk)) * columns)
        conn.execute(_padded_sql(head, tail, columns, size), values)


def _insert_spans(conn: sqlite3.Connection, rows: Sequence[Sequence[Any]], limit: int) -> None:
    """Append rows to the spans table and index their text (in a write transaction): the
    new rows are those past the largest rowid before (a rowid table without AUTOINCREMENT
    gives each new row the largest rowid + 1; a span already stored is not written)."""
    last = conn.execute("SELECT COALESCE(MAX(rowid), 0) FROM spans").fetchone()[0]
    _insert_rows(conn, _SPANS, rows, limit)
    conn.execute(_INDEX_TEXT, (last,))


def _executemany_rows(
    conn: sqlite3.Connection, statement: tuple[str, str, int], rows: Sequence[Sequence[Any]]
) -> None:
    """``rows`` with ``executemany`` of a one-row statement: what :func:`_insert_rows` is
    measured against (``python -m tracemux.bench.store_write --rows``)."""
    head, tail, columns = statement
    conn.executemany(_values_sql(head, tail, columns, 1), rows)


# SQLite must not see a fork() in the middle of a transaction: the child would inherit
# SQLite's in-process record of a lock that no thread of the child will ever release, and
# its own writes would find the database "locked" forever. A write holds this guard only
# while it holds SQLite's write lock (milliseconds); waiting for another process's lock
# happens outside it, in short tries (see _write_transaction), so fork() never waits long.
class _ForkGuard:
    """A lock around every call into SQLite, which a pending fork() gets next.

    A plain lock is not fair: threads that query back to back would re-take it before a
    waiting fork() ever did, and fork() would give up waiting and fork unguarded. Here a
    pending fork closes the gate first: new callers wait until the fork is done, the
    current holder finishes its one call, and fork() takes the lock.
    """

    __slots__ = ("_fork_pending", "_lock", "_taken_for_fork")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fork_pending = False
        self._taken_for_fork = False

    def acquire(self) -> None:
        while self._fork_pending:
            time.sleep(0.001)
        self._lock.acquire()

    @property
    def fork_pending(self) -> bool:
        """Whether a fork() waits for the guard: a long holder should give way."""
        return self._fork_pending

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> None:
        self.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def before_fork(self) -> None:
        self._fork_pending = True
        self._taken_for_fork = self._lock.acquire(timeout=5.0)
        if not self._taken_for_fork:
            log.warning("tracemux: forking during a long SQLite call; the child may not write")

    @property
    def held_for_fork(self) -> bool:
        """Whether the last fork() happened with the guard held (no call in progress)."""
        return self._taken_for_fork

    def after_fork_in_parent(self) -> None:
        if self._taken_for_fork:
            self._taken_for_fork = False
            self._lock.release()
        self._fork_pending = False


_fork_guard = _ForkGuard()
_LOCK_TRY = 0.005  # seconds SQLite may wait for a lock in one try (its busy timeout)
_LOCK_PATIENCE = 10.0  # seconds a write keeps trying before it fails (and is retried later)
_TURN_GAP = 0.003  # seconds a writer pauses after each commit
_GIVE_WAY_TURNS = 2  # forks one write transaction gives way to before it makes them wait
_READ_PATIENCE = 5.0  # seconds a read keeps trying a busy database before it fails
_ROWS_PER_FETCH = 16  # rows a read fetches per hold of the fork guard


def _before_fork() -> None:
    _fork_guard.before_fork()


def _after_fork_in_parent() -> None:
    _fork_guard.after_fork_in_parent()


#: the connections (with a reader's cursor, if one is mid-result) open in this process.
#: A forked child closes the ones it inherited before it opens one of its own. SQLite keeps
#: one in-memory record per database file of the locks this process holds, and takes a
#: POSIX lock only when that record says it holds none. An inherited WAL connection says
#: "SHARED held", but POSIX locks do not cross fork(): the child's own connection then held
#: no real lock, a parent connection closing meanwhile got the EXCLUSIVE lock, checkpointed
#: and deleted the WAL, and the child's later commits went to the deleted file (lost,
#: though counted as exported). Closed before the child has a connection, they cannot
#: release any lock of the child's.
_open_connections: dict[sqlite3.Connection, sqlite3.Cursor | None] = {}
#: inherited connections not closed yet: closed by the first thread of the child that
#: opens a connection (an export thread, under its exit deadline: never the fork itself)
_inherited: list[tuple[sqlite3.Connection, sqlite3.Cursor | None]] = []


def _after_fork_in_child() -> None:
    global _fork_guard
    guarded = _fork_guard.held_for_fork
    _fork_guard = _ForkGuard()  # the child has no other thread that could hold it
    # Unguarded, a parent thread was inside SQLite (mid-transaction, or holding one of its
    # mutexes): closing could hang or roll back in shared memory, so they are kept.
    _inherited[:] = _open_connections.items() if guarded else ()
    _open_connections.clear()


def _close_inherited() -> None:
    """Close the connections this process inherited through fork(). Call under the guard,
    before opening a connection."""
    while _inherited:
        conn, cursor = _inherited.pop()
        with contextlib.suppress(Exception):
            if cursor is not None:
                cursor.close()  # a reader's unfinished statement would keep conn open
            conn.close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )


class _GiveWay(Exception):
    """Raised inside a write transaction when a fork() is waiting for the fork guard."""


class _YieldingConnection:
    """A connection inside a write transaction that gives way to a pending fork().

    A transaction holds the fork guard from BEGIN to COMMIT: the child must not inherit
    SQLite's record of a write lock that none of its threads will ever release. Under busy
    application threads, each statement may wait milliseconds for the GIL, and a batch's
    transaction can last seconds: longer than fork() may wait. So before each statement
    this checks whether a fork() waits; if one does, the transaction is rolled back (in
    this process: nothing is lost), the guard handed over, and the write done again after
    the fork (see :func:`_write_in_turns`).
    """

    __slots__ = ("_conn", "_guard")

    def __init__(self, conn: sqlite3.Connection, guard: _ForkGuard) -> None:
        self._conn = conn
        self._guard = guard

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> sqlite3.Cursor:
        if self._guard.fork_pending:
            raise _GiveWay
        return self._conn.execute(sql, parameters)

    def __getattr__(self, name: str) -> Any:  # the rest (getlimit...) as the connection's
        return getattr(self._conn, name)


def _write_in_turns(conn: sqlite3.Connection, write: Callable[[sqlite3.Connection], _T]) -> _T:
    """``write(conn)`` in a write transaction that gives way to the first forks that come
    while it runs (rolled back, then run again once the fork is done). After
    :data:`_GIVE_WAY_TURNS` of them it keeps the guard to the end, and a fork waits for it
    (at most 5 s): forks coming faster than the transaction lasts must not stall it."""
    turns = 0
    while True:
        try:
            with _write_transaction(conn, yielding=turns < _GIVE_WAY_TURNS) as tx:
                return write(tx)
        except _GiveWay:
            turns += 1  # rolled back; the guard waits for the fork before the next BEGIN


@contextlib.contextmanager
def _write_transaction(
    conn: sqlite3.Connection, *, yielding: bool = False
) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the fork guard, rolled back on error.
    Yields the connection to write with: ``yielding`` makes it raise :class:`_GiveWay`
    when a fork() is waiting (use :func:`_write_in_turns`)."""
    deadline = time.monotonic() + _LOCK_PATIENCE
    while True:
        guard = _fork_guard
        guard.acquire()
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except sqlite3.OperationalError as exc:
            guard.release()
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        # another process is writing: try again (SQLite's busy handler did the waiting)
    try:
        yield _YieldingConnection(conn, guard) if yielding else conn  # type: ignore[misc]
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    finally:
        guard.release()
    # SQLite's lock goes to whoever polls at the right moment: a writer that commits batch
    # after batch without pause can starve another process (its forked child) for seconds.
    # A short gap after each commit gives the others a turn (1.5 µs per span at 2,000 per
    # batch).
    time.sleep(_TURN_GAP)


def default_path() -> Path:
    """Where the store lives when ``TRACEMUX_DB`` is not set: the user's data directory."""
    return platformdirs.user_data_path("tracemux", appauthor=False) / "traces.db"


@dataclass(frozen=True)
class StoredRun:
    """One run as the store holds it."""

    run_id: str
    trace_id: str
    name: str | None
    user_id: str | None
    session_id: str | None
    project: str | None
    tags: list[str]
    metadata: Any
    start_ns: int
    end_ns: int | None
    status: str
    span_count: int
    error_count: int
    input_tokens: int
    output_tokens: int
    inputs: Any = None
    outputs: Any = None
    error: dict[str, str] | None = None

    @property
    def duration_ms(self) -> float | None:
        return None if self.end_ns is None else (self.end_ns - self.start_ns) / 1e6

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["duration_ms"] = self.duration_ms
        return d


@dataclass(frozen=True)
class StoredSpan:
    """One span as the store holds it (ids as hex text)."""

    run_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    start_ns: int
    end_ns: int
    status: str
    inputs: Any = None
    outputs: Any = None
    metadata: Any = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    model: str | None = None
    error: dict[str, str] | None = None

    @property
    def duration_ms(self) -> float:
        return (self.end_ns - self.start_ns) / 1e6

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["duration_ms"] = self.duration_ms
        return d


@dataclass(frozen=True)
class StoredSession:
    """A session: the runs that share a ``session_id``, summed up."""

    session_id: str
    user_id: str | None
    runs: int
    first_ns: int
    last_ns: int
    input_tokens: int
    output_tokens: int
    runs_with_errors: int
    error_count: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class DashboardData:
    """Raw figures of :meth:`SQLiteStore.dashboard_data`, as rows.

    ``runs``: (step number, runs, runs with errors); ``figures``: (is a flow, flow or
    component name, kind, time in grains, calls, failures, longest ns, its run, a failed
    run, histogram JSON [[bucket, count], ...] (see :func:`bucket_ms`)); ``models``: (time
    in grains, model, calls, input tokens, output tokens); ``grain_ns``: the length of a
    grain (an hour or a day).
    """

    grain_ns: int
    runs: list[tuple[Any, ...]]
    figures: list[tuple[Any, ...]]
    models: list[tuple[Any, ...]]


@dataclass(frozen=True)
class RunsPage:
    """A page of :meth:`SQLiteStore.runs_page`: the runs, and the cursors of the pages
    after and before it (None at either end)."""

    runs: list[StoredRun]
    next: str | None
    prev: str | None


@dataclass(frozen=True)
class SQLiteStore(Destination):
    """The local store: a SQLite file. Equal stores (same path and limits) share one lane.

    ``max_runs``: keep at most this many runs (newest first); ``max_age_days``: delete runs
    older than this; ``prune_every``: seconds between pruning passes on the export thread.
    """

    path: str
    max_runs: int = 100_000
    max_age_days: float = 30.0
    prune_every: float = 60.0

    max_batch: ClassVar[int] = 2000
    wants_run_starts: ClassVar[bool] = True

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_runs: int = 100_000,
        max_age_days: float = 30.0,
        prune_every: float = 60.0,
    ) -> None:
        resolved = Path(path).expanduser() if path is not None else default_path()
        if str(resolved) != ":memory:":
            resolved = resolved.absolute()
        if max_runs < 1:
            raise ValueError("SQLiteStore.max_runs must be at least 1")
        if max_age_days <= 0:
            raise ValueError("SQLiteStore.max_age_days must be positive")
        object.__setattr__(self, "path", str(resolved))
        object.__setattr__(self, "max_runs", int(max_runs))
        object.__setattr__(self, "max_age_days", float(max_age_days))
        object.__setattr__(self, "prune_every", float(prune_every))

    def describe(self) -> str:
        return f"sqlite:{self.path}"

    def open(self) -> _SQLiteExporter:
        return _SQLiteExporter(self)

    # -- reading ----------------------------------------------------------------------

    def _query(self, sql: str, args: Sequence[Any] = ()) -> tuple[list[str], list[tuple[Any, ...]]]:
        """(column names, rows) of one read-only query on a short-lived connection.

        Every call into SQLite holds the fork guard, readers' too: a fork() while this
        thread is inside SQLite could leave one of SQLite's process-wide mutexes locked in
        the child forever. Rows are fetched a few at a time, each fetch under the guard, so
        fork() waits for a few steps at most, however big the result (each step may give
        the GIL away to a busy thread for milliseconds). A busy database (WAL recovery, a
        writer in another process) is retried outside the guard. ``sqlite3.OperationalError``
        is raised when the database stays unreadable for ``_READ_PATIENCE`` seconds.
        """
        if not os.path.exists(self.path):
            return [], []
        deadline = time.monotonic() + _READ_PATIENCE
        while True:
            guard = _fork_guard
            with guard:
                _close_inherited()
                conn = sqlite3.connect(self.path, timeout=_LOCK_TRY, check_same_thread=False)
                _open_connections[conn] = None  # a forked child closes it at once
            cur = None
            try:
                with guard:
                    conn.execute("PRAGMA query_only = 1")
                    cur = _open_connections[conn] = conn.execute(sql, args)
                rows: list[tuple[Any, ...]] = []
                while True:
                    with guard:
                        some = cur.fetchmany(_ROWS_PER_FETCH)
                    if not some:
                        return [c[0] for c in cur.description], rows
                    rows += some
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
            finally:
                with guard:  # the cursor first: a live one would defer the real close
                    if cur is not None:  # to its garbage collection, outside the guard
                        cur.close()
                    _close(conn)
            time.sleep(_LOCK_TRY)

    def _filters(
        self, search: str | None, status: str | None, user_id: str | None, session_id: str | None
    ) -> tuple[str, list[Any]]:
        """The WHERE clause of these filters; search uses the full-text index when the
        store has one (a store not yet upgraded is searched by name and id only)."""
        fts = _NO_TEXT
        if search:
            try:
                _, rows = self._query(
                    "SELECT user_version, EXISTS (SELECT 1 FROM sqlite_master"
                    " WHERE type = 'table' AND name = 'span_text') FROM pragma_user_version"
                )
                if rows and rows[0][1]:
                    fts = _TEXT_BY_SPAN if rows[0][0] >= _SPAN_TEXT_BY_SPAN_SINCE else _TEXT_BY_RUN
            except sqlite3.OperationalError:
                fts = _NO_TEXT
        return _run_filters(search, status, user_id, session_id, fts=fts)

    def runs(
        self,
        limit: int = 50,
        offset: int = 0,
        *,
        search: str | None = None,
        status: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> list[StoredRun]:
        """The newest runs first, optionally filtered.

        ``search``: runs whose id starts with the text, or one of whose spans holds its
        words (the last one as a prefix) in its name, inputs, outputs, logs or error
        (full-text, SQLite FTS5; a store not yet upgraded: id or name contains the text).

        ``status``: one of :data:`RUN_STATUS_FILTERS`; ``"error"`` selects every run with
        a failed span (see :data:`RUN_STATUSES`), ``"failed"`` only the runs that failed
        as a whole. An unknown status raises ``ValueError``.
        """
        where, args = self._filters(search, status, user_id, session_id)
        sql = f"SELECT * FROM runs {where} ORDER BY start_ns DESC LIMIT ? OFFSET ?"
        try:
            cols, rows = self._query(sql, [*args, int(limit), int(offset)])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [_stored_run(dict(zip(cols, row))) for row in rows]

    def runs_page(
        self,
        limit: int = 50,
        *,
        sort: str = "start",
        descending: bool = True,
        after: str | None = None,
        before: str | None = None,
        search: str | None = None,
        status: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> RunsPage:
        """One page of runs in ``sort`` order (one of :data:`RUN_SORTS`), by keyset: pass
        a page's ``next`` as ``after`` for the following page, its ``prev`` as ``before``
        for the one above. Each page is an index range scan, however deep (no OFFSET).
        Filters as in :meth:`runs`; a malformed cursor or sort raises ``ValueError``."""
        if sort not in RUN_SORTS:
            raise ValueError(f"sort must be one of {', '.join(RUN_SORTS)}")
        if after is not None and before is not None:
            raise ValueError("give after or before, not both")
        key = RUN_SORTS[sort]
        where, args = self._filters(search, status, user_id, session_id)
        backwards = before is not None
        ascending = descending == backwards  # the direction this query walks
        cursor = after if after is not None else before
        if cursor is not None:
            value, rowid = _parse_cursor(cursor)
            op = ">" if ascending else "<"
            # not a row value "(key, rowid) < (?, ?)": SQLite searches an expression index
            # only by a plain range on the expression
            keyset = f"{key} {op}= ? AND ({key} {op} ? OR rowid {op} ?)"
            where += (" AND " if where else "WHERE ") + keyset
            args = [*args, value, value, rowid]
        order = "ASC" if ascending else "DESC"
        sql = (
            f"SELECT {key} AS sort_key_, rowid AS rowid_, * FROM runs {where}"
            f" ORDER BY {key} {order}, rowid {order} LIMIT ?"
        )
        try:
            cols, rows = self._query(sql, [*args, int(limit) + 1])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return RunsPage([], None, None)
            raise
        more = len(rows) > limit
        rows = rows[:limit]
        if backwards:
            rows.reverse()
        cursors = [f"{row[0]}.{row[1]}" for row in rows]
        runs = [_stored_run(dict(zip(cols[2:], row[2:]))) for row in rows]
        if not runs:
            return RunsPage([], None, None)
        has_next = more if not backwards else True
        has_prev = (cursor is not None) if not backwards else more
        return RunsPage(runs, cursors[-1] if has_next else None, cursors[0] if has_prev else None)

    def count_runs(
        self,
        *,
        search: str | None = None,
        status: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> int:
        """How many runs match the same filters as :meth:`runs`."""
        where, args = self._filters(search, status, user_id, session_id)
        try:
            _, rows = self._query(f"SELECT COUNT(*) FROM runs {where}", args)
        except sqlite3.OperationalError:
            return 0
        return int(rows[0][0]) if rows else 0

    def run(self, run_id: str) -> StoredRun | None:
        """One run by id (a unique prefix of the id is enough), or None (see
        :meth:`match_runs` for what an ambiguous prefix matches)."""
        found = self.match_runs(run_id, 2)
        if not found or (found[0].run_id != run_id and len(found) > 1):
            return None
        return found[0]

    def match_runs(self, prefix: str, limit: int = 10) -> list[StoredRun]:
        """The runs whose id is ``prefix`` or starts with it (at most ``limit``, the exact
        match first, then newest first): what an ambiguous prefix could mean."""
        try:
            cols, rows = self._query(
                "SELECT * FROM runs WHERE run_id = ? OR run_id LIKE ? ESCAPE '\\' "
                "ORDER BY run_id = ? DESC, start_ns DESC LIMIT ?",
                (prefix, _like_prefix(prefix), prefix, int(limit)),
            )
        except sqlite3.OperationalError:
            return []
        return [_stored_run(dict(zip(cols, row))) for row in rows]

    def usage_by_run(self, run_ids: Sequence[str]) -> dict[str, list[tuple[str, int, int]]]:
        """For each of ``run_ids``: (model, input tokens, output tokens) summed over the
        run's spans that name a model (what its cost is worked out from)."""
        ids = list(dict.fromkeys(run_ids))[:_MAX_IDS_PER_QUERY]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        try:
            _, rows = self._query(
                "SELECT run_id, model,"
                " SUM(COALESCE(json_extract(usage, '$.input_tokens'), 0)),"
                " SUM(COALESCE(json_extract(usage, '$.output_tokens'), 0))"
                f" FROM spans WHERE run_id IN ({marks}) AND model IS NOT NULL"
                " GROUP BY run_id, model ORDER BY run_id, model",
                ids,
            )
        except sqlite3.OperationalError:
            return {}
        out: dict[str, list[tuple[str, int, int]]] = {}
        for run_id, model, input_tokens, output_tokens in rows:
            out.setdefault(run_id, []).append((model, int(input_tokens), int(output_tokens)))
        return out

    def import_runs(self, runs: Sequence[StoredRun], spans: Sequence[StoredSpan]) -> int:
        """Write runs and their spans as given (e.g. read back from an export), replacing
        runs of the same id; returns how many runs were written."""
        if not runs:
            return 0
        writer = _SQLiteExporter(self)
        try:
            return writer.import_runs(runs, spans)
        finally:
            writer.close()

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete these runs (full ids) with their spans and search text; returns how many
        were deleted. Opens a writing connection of its own (upgrading an old store)."""
        if not run_ids or not os.path.exists(self.path):
            return 0
        writer = _SQLiteExporter(self)
        try:
            return writer.delete_runs(run_ids)
        finally:
            writer.close()

    def sessions(
        self, limit: int = 50, offset: int = 0, *, user_id: str | None = None
    ) -> list[StoredSession]:
        """Sessions (runs that share a ``session_id``), the most recently active first."""
        where, args = ("WHERE session_id IS NOT NULL", [])
        if user_id:
            where += " AND user_id = ?"
            args.append(user_id)
        sql = (
            "SELECT session_id, MAX(user_id), COUNT(*), MIN(start_ns), MAX(start_ns),"
            " SUM(input_tokens), SUM(output_tokens), SUM(error_count > 0), SUM(error_count)"
            f" FROM runs {where} GROUP BY session_id ORDER BY MAX(start_ns) DESC, session_id"
            " LIMIT ? OFFSET ?"
        )
        try:
            _, rows = self._query(sql, [*args, int(limit), int(offset)])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [StoredSession(*row) for row in rows]

    def count_sessions(self, *, user_id: str | None = None) -> int:
        """How many sessions :meth:`sessions` can list."""
        sql = "SELECT COUNT(DISTINCT session_id) FROM runs WHERE session_id IS NOT NULL"
        args = []
        if user_id:
            sql += " AND user_id = ?"
            args.append(user_id)
        try:
            _, rows = self._query(sql, args)
        except sqlite3.OperationalError:
            return 0
        return int(rows[0][0]) if rows else 0

    def session_runs(self, session_id: str, limit: int = 500) -> list[StoredRun]:
        """A session's runs in the order they started (a conversation's turns)."""
        try:
            cols, rows = self._query(
                "SELECT * FROM runs WHERE session_id = ? ORDER BY start_ns, rowid LIMIT ?",
                (session_id, int(limit)),
            )
        except sqlite3.OperationalError:
            return []
        return [_stored_run(dict(zip(cols, row))) for row in rows]

    def usage_by_session(self, session_ids: Sequence[str]) -> dict[str, list[tuple[str, int, int]]]:
        """For each session: (model, input tokens, output tokens) over its runs' spans."""
        ids = list(dict.fromkeys(session_ids))[:_MAX_IDS_PER_QUERY]
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        try:
            _, rows = self._query(
                "SELECT r.session_id, s.model,"
                " SUM(COALESCE(json_extract(s.usage, '$.input_tokens'), 0)),"
                " SUM(COALESCE(json_extract(s.usage, '$.output_tokens'), 0))"
                f" FROM runs r JOIN spans s ON s.run_id = r.run_id"
                f" WHERE r.session_id IN ({marks}) AND s.model IS NOT NULL"
                " GROUP BY r.session_id, s.model",
                ids,
            )
        except sqlite3.OperationalError:
            return {}
        out: dict[str, list[tuple[str, int, int]]] = {}
        for session_id, model, input_tokens, output_tokens in rows:
            out.setdefault(session_id, []).append((model, int(input_tokens), int(output_tokens)))
        return out

    def dashboard_data(
        self,
        since_ns: int,
        until_ns: int,
        step_ns: int,
        *,
        project: str | None = None,
        flow: str | None = None,
    ) -> DashboardData:
        """The dashboard's raw figures between two times (see :class:`DashboardData`):
        runs per ``step_ns`` from the runs themselves; the rest from the figures the
        export thread keeps, per hour when ``step_ns`` is under a day, else per day (whole
        days: the first may begin before ``since_ns``). ``project``/``flow`` (a run
        name) narrow everything."""
        grain = "h" if step_ns < DAY_NS else "d"
        grain_ns = GRAINS[grain]
        run_where = "start_ns >= ? AND start_ns < ?"
        run_args: list[Any] = [since_ns, until_ns]
        stat_where = "grain = ? AND t >= ? AND t <= ?"
        stat_args: list[Any] = [grain, since_ns // grain_ns, (until_ns - 1) // grain_ns]
        for column, value in (("project", project), ("flow", flow)):
            if value:
                run_where += f" AND {'name' if column == 'flow' else column} = ?"
                run_args.append(value)
                stat_where += f" AND {column} = ?"
                stat_args.append(value)
        queries = {
            # two index-only scans: every run (runs_by_start), runs with errors
            # (runs_with_errors)
            "runs": (
                f"SELECT (start_ns - ?) / ?, COUNT(*) FROM runs WHERE {run_where}"
                " GROUP BY 1 ORDER BY 1",
                [since_ns, step_ns, *run_args],
            ),
            "errors": (
                f"SELECT (start_ns - ?) / ?, COUNT(*) FROM runs WHERE {run_where}"
                " AND error_count > 0 GROUP BY 1 ORDER BY 1",
                [since_ns, step_ns, *run_args],
            ),
            "figures": (
                "SELECT kind = ?, CASE WHEN kind = ? THEN flow ELSE name END, kind, t, n,"
                f" errors, max_ns, slowest_run, failed_run, hist FROM stats_spans"
                f" WHERE {stat_where}",
                [RUN_KIND, RUN_KIND, *stat_args],
            ),
            "models": (
                "SELECT t, model, SUM(n), SUM(input_tokens), SUM(output_tokens)"
                f" FROM stats_models WHERE {stat_where} GROUP BY 1, 2 ORDER BY 1, 2",
                stat_args,
            ),
        }
        out: dict[str, list[tuple[Any, ...]]] = {}
        for key, (sql, args) in queries.items():
            try:
                out[key] = self._query(sql, args)[1]
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                out[key] = []  # a store not yet upgraded: no figures yet
        errors = dict(out.pop("errors"))
        out["runs"] = [(i, n, errors.get(i, 0)) for i, n in out["runs"]]
        return DashboardData(grain_ns=grain_ns, **out)

    def flows(self, limit: int = 200) -> list[str]:
        """The names of the runs in the store (the flows), most recently seen first."""
        try:
            _, rows = self._query(
                "SELECT flow FROM stats_spans WHERE grain = 'd' AND kind = ? AND flow != ''"
                " GROUP BY flow ORDER BY MAX(t) DESC, flow LIMIT ?",
                (RUN_KIND, int(limit)),
            )
        except sqlite3.OperationalError:
            return []
        return [row[0] for row in rows]

    def spans(self, run_id: str) -> list[StoredSpan]:
        """The run's spans, in start order, with parent ids, values, logs and usage."""
        try:
            cols, rows = self._query(
                "SELECT * FROM spans WHERE run_id = ? ORDER BY start_ns, span_id", (run_id,)
            )
        except sqlite3.OperationalError:
            return []
        return [_stored_span(dict(zip(cols, row))) for row in rows]


# What each status filter selects. ``ok`` and ``partial`` also hold for a store that was
# written by an older tracemux and not yet upgraded (it wrote ``ok`` for a partial run).
_STATUS_FILTERS = {
    "running": "status = 'running'",
    "ok": "status = 'ok' AND error_count = 0",
    "partial": "status IN ('ok', 'partial') AND error_count > 0",
    "error": "error_count > 0",
    "failed": "status = 'error'",
}


_CURSOR = re.compile(r"^(-?\d{1,20})\.(\d{1,20})$")


def _parse_cursor(cursor: str) -> tuple[int, int]:
    m = _CURSOR.match(cursor)
    if m is None:
        raise ValueError("cursor is malformed: pass a page's next or prev as it was given")
    value, rowid = int(m.group(1)), int(m.group(2))
    if not (-(2**63) <= value < 2**63 and rowid < 2**63):
        raise ValueError("cursor is out of range")
    return value, rowid


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def fts_query(text: str) -> str | None:
    """An FTS5 query for what a user typed: every word must appear (the last one as a
    prefix: ``rotat`` finds "rotated"); None when the text has no word."""
    words = _WORD.findall(text)[:_MAX_SEARCH_WORDS]
    if not words:
        return None
    return " ".join(f'"{w}"' for w in words) + "*"


_WORD = re.compile(r"\w+")
_MAX_SEARCH_WORDS = 16


def _run_filters(
    search: str | None,
    status: str | None,
    user_id: str | None,
    session_id: str | None,
    fts: int = 0,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if search and len(search) > MAX_SEARCH_CHARS:
        raise ValueError(f"search is longer than {MAX_SEARCH_CHARS} characters")
    if search:
        pattern = "%" + _like_prefix(search)
        match = fts_query(search) if fts else None
        if match is None:
            clauses.append("(name LIKE ? ESCAPE '\\' OR run_id LIKE ? ESCAPE '\\')")
            args += [pattern, pattern]
        else:  # a run whose id starts with the text, or one of whose spans (the root's
            # name included) has its words: index searches, no scan of the runs
            clauses.append(
                "((run_id >= ? AND run_id < ?) OR "
                + (
                    "run_id IN (SELECT run_id FROM spans WHERE rowid IN"
                    " (SELECT rowid FROM span_text WHERE span_text MATCH ?)))"
                    if fts == _TEXT_BY_SPAN
                    else f"rowid IN (SELECT rowid >> {_SPANS_PER_RUN_BITS} FROM span_text"
                    " WHERE span_text MATCH ?))"
                )
            )
            args += [search, search + "\U0010ffff", match]
    if status:
        if status not in _STATUS_FILTERS:
            raise ValueError(f"status must be one of {', '.join(RUN_STATUS_FILTERS)}")
        clauses.append(_STATUS_FILTERS[status])
    if user_id:
        clauses.append("user_id = ?")
        args.append(user_id)
    if session_id:
        clauses.append("session_id = ?")
        args.append(session_id)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", args


def _load(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _stored_run(row: dict[str, Any]) -> StoredRun:
    for key in ("tags", "metadata", "inputs", "outputs", "error"):
        row[key] = _load(row[key])
    row["tags"] = row["tags"] or []
    if row["status"] == "ok" and row["error_count"]:
        row["status"] = "partial"  # a store not yet upgraded to schema 2
    return StoredRun(**row)


def _stored_span(row: dict[str, Any]) -> StoredSpan:
    for key in ("inputs", "outputs", "metadata", "logs", "usage", "error"):
        row[key] = _load(row[key])
    row["logs"] = row["logs"] or []
    return StoredSpan(**row)


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8")


def _json_text(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode("utf-8")


def _run_columns(run: RunInfo) -> tuple[Any, ...]:
    """The run's identity columns, in the order of the runs table."""
    return (
        run.run_id,
        run.trace_id.hex(),
        run.name,
        run.user_id,
        run.session_id,
        run.project,
        _json_text(list(run.tags)),
        _text(run.metadata),
    )


# Full-text search, from schema 7: the FTS5 table span_text indexes the spans table's own
# name, inputs, outputs, logs and error (external content: the text is not copied), one
# entry per span under the span's rowid. The export thread feeds it with one statement per
# batch, from the rows it just wrote; a span's entry is deleted (the FTS5 'delete' command,
# given the same row) just before the span. Schemas 4 to 6 kept a copy of the text under
# (the run's rowid << 20) + the span's number in its run: read so until upgraded.
_NO_TEXT, _TEXT_BY_RUN, _TEXT_BY_SPAN = 0, 1, 2
_SPAN_TEXT_BY_SPAN_SINCE = 7
_SPANS_PER_RUN_BITS = 20
_TEXT_CHARS = 32_768  # of each value a span's text held (schemas 4 to 6)
_TEXT_COLUMNS = "name, inputs, outputs, logs, error"
_SPAN_TEXT_TABLE = (
    f"CREATE VIRTUAL TABLE span_text USING fts5({_TEXT_COLUMNS}, content = 'spans',"
    " content_rowid = 'rowid', tokenize = 'unicode61 remove_diacritics 2', detail = none)"
)
_INDEX_TEXT = (
    f"INSERT INTO span_text (rowid, {_TEXT_COLUMNS})"
    f" SELECT rowid, {_TEXT_COLUMNS} FROM spans WHERE rowid > ?"
)
_UNINDEX_TEXT = (
    f"INSERT INTO span_text (span_text, rowid, {_TEXT_COLUMNS})"
    f" SELECT 'delete', rowid, {_TEXT_COLUMNS} FROM spans WHERE run_id IN"
)
_SPANS_V7 = """CREATE TABLE spans_v7 (
    run_id    TEXT NOT NULL,
    span_id   TEXT NOT NULL,
    parent_id TEXT,
    name      TEXT NOT NULL,
    kind      TEXT NOT NULL,
    start_ns  INTEGER NOT NULL,
    end_ns    INTEGER NOT NULL,
    status    TEXT NOT NULL,
    inputs    TEXT,
    outputs   TEXT,
    metadata  TEXT,
    logs      TEXT,
    usage     TEXT,
    model     TEXT,
    error     TEXT
)"""

# The dashboard's figures, kept as spans are written (by the export thread, a few rows per
# batch), per hour and per day: for each (project, flow, span name, kind), the calls, the
# failures, the longest call and its run, a failed run, and a latency histogram (buckets
# 10% wide, as JSON [[bucket, count], ...]); tokens per model. Root spans are kept as kind
# '(run)': the flows' latency. Project and flow '' stand for none (keys are NOT NULL).
HOUR_NS = 3_600_000_000_000
DAY_NS = 24 * HOUR_NS
GRAINS = {"h": HOUR_NS, "d": DAY_NS}
RUN_KIND = "(run)"
LATENCY_BASE = 1.1
_STATS_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS stats_spans (
        grain TEXT NOT NULL, t INTEGER NOT NULL, project TEXT NOT NULL, flow TEXT NOT NULL,
        name TEXT NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL, errors INTEGER NOT NULL,
        max_ns INTEGER NOT NULL, slowest_run TEXT, failed_run TEXT, hist TEXT NOT NULL,
        PRIMARY KEY (grain, t, project, flow, name, kind)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS stats_models (
        grain TEXT NOT NULL, t INTEGER NOT NULL, project TEXT NOT NULL, flow TEXT NOT NULL,
        model TEXT NOT NULL, n INTEGER NOT NULL, input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        PRIMARY KEY (grain, t, project, flow, model)) WITHOUT ROWID""",
)
# A key already stored is merged in SQL: one statement per batch, where reading the stored
# rows back took one statement per key (each gives the GIL away, for milliseconds when the
# application's threads are busy). The SET expressions see the stored row's old values.
_STATS_SPANS = (
    "INSERT INTO stats_spans (grain, t, project, flow, name, kind, n, errors,"
    " max_ns, slowest_run, failed_run, hist)",
    """ON CONFLICT DO UPDATE SET n = n + excluded.n, errors = errors + excluded.errors,
    max_ns = max(max_ns, excluded.max_ns),
    slowest_run = CASE WHEN max_ns >= excluded.max_ns THEN slowest_run
                       ELSE excluded.slowest_run END,
    failed_run = COALESCE(excluded.failed_run, failed_run),
    hist = (SELECT json_group_array(json_array(bucket, n)) FROM (
        SELECT bucket, SUM(n) AS n FROM (
            SELECT json_extract(value, '$[0]') AS bucket, json_extract(value, '$[1]') AS n
            FROM json_each(stats_spans.hist)
            UNION ALL
            SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]')
            FROM json_each(excluded.hist))
        GROUP BY bucket ORDER BY bucket))""",
    12,
)
_STATS_MODELS = (
    "INSERT INTO stats_models (grain, t, project, flow, model, n, input_tokens, output_tokens)",
    """ON CONFLICT DO UPDATE SET n = n + excluded.n,
    input_tokens = input_tokens + excluded.input_tokens,
    output_tokens = output_tokens + excluded.output_tokens""",
    8,
)
_LOG_BASE = math.log10(LATENCY_BASE)


def latency_bucket(duration_ns: int) -> int:
    """The histogram bucket of a duration."""
    return math.floor(math.log10(max(1, duration_ns // 1000)) / _LOG_BASE)


def bucket_ms(bucket: int) -> float:
    """The duration a bucket stands for: the middle of its range, in milliseconds."""
    return LATENCY_BASE ** (bucket + 0.5) / 1000


# Upgrades of a store made by an older tracemux, in place: (version it leads to, statements).
_MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (
        2,
        (
            "UPDATE runs SET status = 'partial' WHERE status = 'ok' AND error_count > 0",
            "CREATE INDEX IF NOT EXISTS runs_with_errors ON runs (start_ns DESC)"
            " WHERE error_count > 0",
        ),
    ),
    (
        3,
        (  # what the list sorts by (keyset pages), and a session's runs
            "CREATE INDEX IF NOT EXISTS runs_by_duration ON runs (COALESCE(end_ns - start_ns, -1))",
            "CREATE INDEX IF NOT EXISTS runs_by_tokens ON runs ((input_tokens + output_tokens))",
            "CREATE INDEX IF NOT EXISTS runs_by_span_count ON runs (span_count)",
            # covering the sessions list (one scan of this index, no table lookups)
            "CREATE INDEX IF NOT EXISTS runs_by_session ON runs (session_id, start_ns,"
            " user_id, input_tokens, output_tokens, error_count)",
        ),
    ),
    (
        4,
        (  # full-text search over the spans' names, inputs, outputs, logs and errors
            "CREATE VIRTUAL TABLE IF NOT EXISTS span_text USING fts5"
            "(body, tokenize = 'unicode61 remove_diacritics 2', detail = none)",
            # the spans already stored: numbered in each run by start
            f"""INSERT OR REPLACE INTO span_text (rowid, body)
            SELECT (r.rowid << {_SPANS_PER_RUN_BITS}) + ((ROW_NUMBER() OVER (
                       PARTITION BY s.run_id ORDER BY s.start_ns, s.span_id) - 1)
                       & {(1 << _SPANS_PER_RUN_BITS) - 1}),
                   s.name || ' ' || COALESCE(substr(s.inputs, 1, {_TEXT_CHARS}), '')
                   || ' ' || COALESCE(substr(s.outputs, 1, {_TEXT_CHARS}), '')
                   || ' ' || COALESCE(substr(s.logs, 1, {_TEXT_CHARS}), '')
                   || ' ' || COALESCE(substr(s.error, 1, {_TEXT_CHARS}), '')
            FROM spans s JOIN runs r ON r.run_id = s.run_id""",
        ),
    ),
    (5, _STATS_SCHEMA),  # and _backfill_stats (in Python: the same code as the writes)
    (
        6,
        (  # what a run's or a session's cost is worked out from, without reading every span
            "CREATE INDEX IF NOT EXISTS spans_with_model ON spans (run_id, model, usage)"
            " WHERE model IS NOT NULL",
        ),
    ),
    (
        7,
        (  # for writing: spans in a rowid table (appended, not inserted into a tree ordered
            # by run id), one index for reading a run's spans (its order: a run's spans are
            # sorted after the lookup), search text indexed from the spans' own columns
            _SPANS_V7,
            "INSERT INTO spans_v7 SELECT * FROM spans ORDER BY run_id, start_ns, span_id",
            "DROP TABLE spans",  # and its indexes
            "ALTER TABLE spans_v7 RENAME TO spans",
            "CREATE UNIQUE INDEX spans_by_id ON spans (run_id, span_id)",
            "CREATE INDEX spans_with_model ON spans (run_id, model, usage) WHERE model IS NOT NULL",
            "DROP TABLE IF EXISTS span_text",
            _SPAN_TEXT_TABLE,
            "INSERT INTO span_text (span_text) VALUES ('rebuild')",
        ),
    ),
)


def _migrate(conn: sqlite3.Connection, version: int) -> None:
    """Bring the schema from ``version`` to :data:`SCHEMA_VERSION` (inside a write
    transaction): a new store gets the first schema, then every migration since. The
    version is read again first: another process (a sibling worker opening the same new
    store) may have upgraded it between our look and our write lock."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    statements = [x for x in _SCHEMA.split(";") if x.strip()] if version == 0 else []
    statements += [sql for to, step in _MIGRATIONS if to > version for sql in step]
    for statement in statements:
        conn.execute(statement)
    if 0 < version < 5:
        _backfill_stats(conn, _max_variables(conn))
    if version:  # not a new store
        log.info(
            "tracemux: upgraded the store's schema from version %d to %d", version, SCHEMA_VERSION
        )
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


_RUN_FIELDS = (
    "run_id", "trace_id", "name", "user_id", "session_id", "project", "tags", "metadata",
    "start_ns", "end_ns", "status", "span_count", "error_count", "input_tokens",
    "output_tokens", "inputs", "outputs", "error",
)  # fmt: skip
_RUN_ROWS = (f"INSERT OR REPLACE INTO runs ({', '.join(_RUN_FIELDS)})", "", len(_RUN_FIELDS))
_RUN_JSON = frozenset({"tags", "metadata", "inputs", "outputs", "error"})
_SPAN_FIELDS = (
    "run_id", "span_id", "parent_id", "name", "kind", "start_ns", "end_ns", "status",
    "inputs", "outputs", "metadata", "logs", "usage", "model", "error",
)  # fmt: skip
_SPAN_JSON = frozenset({"inputs", "outputs", "metadata", "logs", "usage", "error"})


def _stored_run_row(run: StoredRun) -> tuple[Any, ...]:
    return tuple(
        _json_text(getattr(run, f)) if f in _RUN_JSON else getattr(run, f) for f in _RUN_FIELDS
    )


def _stored_span_row(span: StoredSpan) -> tuple[Any, ...]:
    row = [
        _json_text(getattr(span, f)) if f in _SPAN_JSON else getattr(span, f) for f in _SPAN_FIELDS
    ]
    if not span.logs:
        row[_SPAN_FIELDS.index("logs")] = None  # as the export thread writes no logs
    return tuple(row)


def aggregate_stats(
    spans: Sequence[Sequence[Any]], runs: dict[str, tuple[str | None, str | None]]
) -> tuple[dict[tuple[Any, ...], list[Any]], dict[tuple[Any, ...], list[int]]]:
    """The dashboard's figures of spans (rows of the spans table; ``runs``: run id ->
    (flow, project)): {(grain, t, project, flow, name, kind): [calls, failures, longest ns,
    its run, a failed run, {bucket: count}]} and {(grain, t, project, flow, model): [calls,
    input tokens, output tokens]}."""
    hours: dict[tuple[Any, ...], list[Any]] = {}
    models: dict[tuple[Any, ...], list[int]] = {}
    no_run = (None, None)
    log10, floor, base = math.log10, math.floor, _LOG_BASE
    for row in spans:  # per hour; the days are summed from the hours below
        run_id, name, start, end, status = row[0], row[3], row[5], row[6], row[7]
        flow, project = runs.get(run_id, no_run)
        key = ("h", start // HOUR_NS, project or "", flow or "", name, row[4])
        if row[2] is None:
            key = (*key[:5], RUN_KIND)
        duration = end - start
        bucket = floor(log10(max(1, duration // 1000)) / base)  # latency_bucket(duration)
        entry = hours.get(key)
        if entry is None:
            entry = hours[key] = [0, 0, -1, None, None, {}]
        entry[0] += 1
        if status == "error":
            entry[1] += 1
            entry[4] = run_id
        if duration > entry[2]:
            entry[2], entry[3] = duration, run_id
        hist = entry[5]
        hist[bucket] = hist.get(bucket, 0) + 1
        model = row[13]
        if model is not None:
            usage = orjson.loads(row[12]) if row[12] else {}
            totals = models.setdefault((*key[:4], model), [0, 0, 0])
            totals[0] += 1
            totals[1] += int(usage.get("input_tokens") or 0)
            totals[2] += int(usage.get("output_tokens") or 0)
    return _add_days(hours), _add_days(models)


def _add_days(hours: dict[tuple[Any, ...], list[Any]]) -> dict[tuple[Any, ...], list[Any]]:
    """Figures per hour (see aggregate_stats) and the same summed per day."""
    out = dict(hours)
    per_day = DAY_NS // HOUR_NS
    for key, entry in hours.items():
        day = ("d", key[1] // per_day, *key[2:])
        total = out.get(day)
        if total is None:
            out[day] = [*entry[:5], dict(entry[5])] if len(entry) == 6 else list(entry)
        elif len(entry) == 3:  # a model's calls and tokens
            total[0] += entry[0]
            total[1] += entry[1]
            total[2] += entry[2]
        else:
            total[0] += entry[0]
            total[1] += entry[1]
            if entry[2] > total[2]:
                total[2], total[3] = entry[2], entry[3]
            if entry[4] is not None:
                total[4] = entry[4]
            hist = total[5]
            for bucket, count in entry[5].items():
                hist[bucket] = hist.get(bucket, 0) + count
    return out


def _write_stats(
    conn: sqlite3.Connection,
    spans: Sequence[Sequence[Any]],
    runs: dict[str, tuple[str | None, str | None]],
    limit: int,
) -> None:
    """Add spans (rows of the spans table) to the dashboard's figures: aggregated here,
    merged into the stored rows of the same keys by the upserts."""
    figures, models = aggregate_stats(spans, runs)
    rows = [
        (*key, n, errors, max_ns, slowest, failed, orjson.dumps(sorted(hist.items())).decode())
        for key, (n, errors, max_ns, slowest, failed, hist) in figures.items()
    ]
    _insert_rows(conn, _STATS_SPANS, rows, limit)
    _insert_rows(conn, _STATS_MODELS, [(*k, *v) for k, v in models.items()], limit)


def _backfill_stats(conn: sqlite3.Connection, limit: int) -> None:
    """The dashboard's figures for the spans a store held before it had them (upgrade)."""
    runs = {
        run_id: (name, project)
        for run_id, name, project in conn.execute("SELECT run_id, name, project FROM runs")
    }
    cursor = conn.execute(f"SELECT {', '.join(_SPAN_FIELDS)} FROM spans")
    while True:
        rows = cursor.fetchmany(5000)
        if not rows:
            return
        _write_stats(conn, rows, runs, limit)


def _prune_runs(conn: sqlite3.Connection, *, run_ids: Sequence[str], cutoff: int) -> None:
    """Delete these runs and the dashboard's figures older than ``cutoff`` (inside a write
    transaction)."""
    _delete_runs(conn, run_ids=run_ids)
    for table in ("stats_spans", "stats_models"):
        conn.execute(
            f"DELETE FROM {table} WHERE (grain = 'h' AND t < ?) OR (grain = 'd' AND t < ?)",
            (cutoff // HOUR_NS, cutoff // DAY_NS),
        )


def _delete_runs(conn: sqlite3.Connection, *, run_ids: Sequence[str]) -> int:
    """Delete runs with their spans and search text (inside a write transaction)."""
    deleted = 0
    for start in range(0, len(run_ids), 500):
        chunk = list(run_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        conn.execute(f"{_UNINDEX_TEXT} ({marks})", chunk)
        conn.execute(f"DELETE FROM spans WHERE run_id IN ({marks})", chunk)
        deleted += conn.execute(f"DELETE FROM runs WHERE run_id IN ({marks})", chunk).rowcount
    return deleted


def batch_rows(
    batch: Sequence[Record],
) -> tuple[list[Any], list[Any], dict[str, list[Any]], list[Any]]:
    """A batch as rows: run starts, spans (the spans table's columns), per run its counts
    (run columns, first start, spans, errors, input and output tokens) and run ends."""
    starts = []
    spans = []
    counts: dict[str, list[Any]] = {}
    ends = []
    for rec in batch:
        run = rec.run
        if type(rec) is RunStart:
            starts.append((*_run_columns(run), run.start_ns))
            continue
        span: SpanRecord = rec  # type: ignore[assignment]
        usage = span.usage
        error = span.error
        spans.append(
            (
                run.run_id,
                format_span_id(span.span_id),
                None if span.parent_id is None else format_span_id(span.parent_id),
                span.name,
                span.kind,
                span.start_ns,
                span.end_ns,
                span.status,
                _text(span.inputs),
                _text(span.outputs),
                _text(span.metadata),
                _json_text(
                    [
                        {
                            "time_ns": lg.time_ns,
                            "level": lg.level,
                            "message": lg.message,
                            "fields": None if lg.fields is None else orjson.loads(lg.fields),
                        }
                        for lg in span.logs
                    ]
                )
                if span.logs
                else None,
                _json_text(usage),
                span.model,
                _json_text(error._asdict()) if error is not None else None,
            )
        )
        c = counts.get(run.run_id)
        if c is None:
            c = counts[run.run_id] = [
                *_run_columns(run),
                span.start_ns,
                0,
                0,
                0,
                0,
            ]
        c[8] = min(c[8], span.start_ns)
        c[9] += 1
        if span.status == "error":
            c[10] += 1
        if usage:
            c[11] += int(usage.get("input_tokens") or 0)
            c[12] += int(usage.get("output_tokens") or 0)
        if span.is_root:
            ends.append(
                (
                    run.run_id,
                    c[1],
                    span.start_ns,
                    span.end_ns,
                    span.status,
                    _text(span.inputs),
                    _text(span.outputs),
                    _json_text(error._asdict()) if error is not None else None,
                )
            )
    return starts, spans, counts, ends


@dataclass
class StoreRows:
    """A batch as the SQLite store writes it (see :func:`store_rows`)."""

    #: rows of the spans table, in its column order
    spans: list[tuple[Any, ...]]
    #: one row of the runs table per run of the batch whose start is in it, and per other
    #: run: what the batch adds to it (see _RUN_STARTED and _RUN_CONTINUED)
    started: list[list[Any]]
    continued: list[list[Any]]
    #: run id -> (flow, project): for the dashboard's figures
    flows: dict[str, tuple[str | None, str | None]]


def _logs_json(logs: Sequence[Any]) -> str:
    """A span's logs as the JSON text the store keeps, the fields' captured JSON as is."""
    dumps = orjson.dumps
    parts = [
        b'{"time_ns":%d,"level":%s,"message":%s,"fields":%s}'
        % (
            lg.time_ns,
            dumps(lg.level),
            dumps(lg.message),
            b"null" if lg.fields is None else lg.fields,
        )
        for lg in logs
    ]
    return (b"[" + b",".join(parts) + b"]").decode("utf-8")


def store_rows(batch: Sequence[Record]) -> StoreRows:
    """A batch as rows: its spans, and each of its runs once (identity, start, the counts
    its spans add, and how it ended when its root span is in the batch). Values are the
    JSON captured on the caller's thread, as text (not decoded and encoded again)."""
    spans = []
    runs: dict[str, list[Any]] = {}
    started = set()
    dumps = orjson.dumps
    for rec in batch:
        run = rec.run
        run_id = run.run_id
        row = runs.get(run_id)
        if row is None:  # the runs table's columns
            row = runs[run_id] = [*_run_columns(run), run.start_ns, None, "running"]
            row += [0, 0, 0, 0, None, None, None]
        if type(rec) is RunStart:
            started.add(run_id)
            if run.start_ns < row[8]:
                row[8] = run.start_ns
            continue
        span: SpanRecord = rec  # type: ignore[assignment]
        usage, error, parent, start = span.usage, span.error, span.parent_id, span.start_ns
        inputs, outputs, metadata = span.inputs, span.outputs, span.metadata
        inputs = None if inputs is None else inputs.decode()
        outputs = None if outputs is None else outputs.decode()
        error_text = None if error is None else dumps(error._asdict()).decode()
        spans.append(
            (
                run_id,
                f"{span.span_id:016x}",
                None if parent is None else f"{parent:016x}",
                span.name,
                span.kind,
                start,
                span.end_ns,
                span.status,
                inputs,
                outputs,
                None if metadata is None else metadata.decode(),
                _logs_json(span.logs) if span.logs else None,
                None if usage is None else dumps(usage).decode(),
                span.model,
                error_text,
            )
        )
        if start < row[8]:
            row[8] = start
        row[11] += 1
        if span.status == "error":
            row[12] += 1
        if usage:
            row[13] += int(usage.get("input_tokens") or 0)
            row[14] += int(usage.get("output_tokens") or 0)
        if span.is_root:
            row[8], row[9], row[10] = start, span.end_ns, span.status
            row[15], row[16], row[17] = inputs, outputs, error_text
    for row in runs.values():  # a run that went on after a failed span is partial
        if row[10] == "ok" and row[12]:
            row[10] = "partial"
    return StoreRows(
        spans,
        [row for run_id, row in runs.items() if run_id in started],
        [row for run_id, row in runs.items() if run_id not in started],
        {run_id: (row[2], row[5]) for run_id, row in runs.items()},
    )


def _close(conn: sqlite3.Connection) -> None:
    """Close a connection, unless a fork() already closed it (it was inherited)."""
    if _open_connections.pop(conn, False) is not False:
        conn.close()


def _check_usable(path: Path) -> None:
    """Raise a non-retryable ExportError, naming the path, when the store can never be
    written as things stand: a parent is a file, the path is a directory, or the nearest
    existing directory is not writable (on a file system mounted read-write: a read-only
    mount may be remounted, so that is retried like a full disk)."""
    why = None
    if path.is_dir():
        why = "it is a directory"
    else:
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not parent.is_dir():
            why = f"{parent} is not a directory"
        elif not os.access(parent if not path.exists() else path, os.W_OK) and not _read_only(
            parent
        ):
            why = "not writable"
    if why is not None:
        raise ExportError(
            f"store unusable: {path}: {why}", retryable=False, reason=f"store_unusable:{path}"
        )


def _read_only(directory: Path) -> bool:
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):
        return False


class _SQLiteExporter:
    """Writes batches into the store. Lives on the export thread."""

    def __init__(self, store: SQLiteStore) -> None:
        self.store = store
        self.conn = self._connect()
        self._max_variables = _max_variables(self.conn)
        self._last_prune = 0.0

    def _connect(self) -> sqlite3.Connection:
        path = self.store.path
        if path != ":memory:":
            _check_usable(Path(path))
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        with _fork_guard:  # every call into SQLite: its global mutexes must not cross a fork
            _close_inherited()
            conn = sqlite3.connect(
                path, timeout=_LOCK_TRY, isolation_level=None, check_same_thread=False
            )
            _open_connections[conn] = None  # a forked child closes it at once
        try:
            with _fork_guard:
                conn.execute("PRAGMA synchronous = NORMAL")
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            # An existing store needs no write to open: another process (a parent that
            # forked us, a sibling worker) may be writing to it without pause.
            if version != SCHEMA_VERSION:
                with _fork_guard:
                    conn.execute("PRAGMA journal_mode = WAL")
                _write_in_turns(conn, functools.partial(_migrate, version=version))
        except BaseException:
            with _fork_guard:
                _close(conn)
            raise
        return conn

    def export(self, batch: Sequence[Record]) -> None:
        rows = store_rows(batch)
        conn = self.conn
        try:
            _write_in_turns(conn, functools.partial(self._write, rows=rows))
        except sqlite3.Error as exc:  # _write_transaction rolled back
            # disk full, read-only, locked: keep the batch and try again later
            raise ExportError(f"sqlite write failed: {exc}", retryable=True) from None
        now = time.monotonic()
        if now - self._last_prune >= self.store.prune_every:
            self._last_prune = now
            self.prune()

    def _write(self, conn: sqlite3.Connection, *, rows: StoreRows) -> None:
        limit = self._max_variables
        if rows.started:
            _insert_rows(conn, _RUN_STARTED, rows.started, limit)
        if rows.continued:
            _insert_rows(conn, _RUN_CONTINUED, rows.continued, limit)
        if rows.spans:
            _insert_spans(conn, rows.spans, limit)
            _write_stats(conn, rows.spans, rows.flows, limit)

    def import_runs(self, runs: Sequence[StoredRun], spans: Sequence[StoredSpan]) -> int:
        """Write whole runs and spans (see :meth:`SQLiteStore.import_runs`)."""
        run_rows = [_stored_run_row(r) for r in runs]
        span_rows = [_stored_span_row(s) for s in spans]
        limit = self._max_variables
        flows = {r.run_id: (r.name, r.project) for r in runs}

        def write(conn: sqlite3.Connection) -> None:
            _delete_runs(conn, run_ids=[r.run_id for r in runs])
            _insert_rows(conn, _RUN_ROWS, run_rows, limit)
            _insert_spans(conn, span_rows, limit)
            _write_stats(conn, span_rows, flows, limit)

        _write_in_turns(self.conn, write)
        return len(runs)

    def delete_runs(self, run_ids: Sequence[str]) -> int:
        """Delete these runs, their spans and their search text. Returns how many."""
        return _write_in_turns(self.conn, functools.partial(_delete_runs, run_ids=run_ids))

    def prune(self) -> int:
        """Delete runs beyond ``max_runs`` or older than ``max_age_days``. Returns how many."""
        store = self.store
        cutoff = time.time_ns() - int(store.max_age_days * 86400 * 1e9)
        conn = self.conn
        try:
            with _fork_guard:
                old = conn.execute(
                    "SELECT run_id FROM runs WHERE start_ns < ? UNION "
                    "SELECT run_id FROM (SELECT run_id FROM runs ORDER BY start_ns DESC "
                    "LIMIT -1 OFFSET ?)",
                    (cutoff, store.max_runs),
                ).fetchall()
            if not old:
                return 0
            ids = [row[0] for row in old]
            _write_in_turns(conn, functools.partial(_prune_runs, run_ids=ids, cutoff=cutoff))
            log.debug("tracemux: pruned %d runs from %s", len(old), store.path)
            return len(old)
        except sqlite3.Error as exc:  # _write_transaction rolled back
            log.warning("tracemux: pruning %s failed: %s", store.path, exc)
            return 0

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error), _fork_guard:
            _close(self.conn)


# -- for the write path's benchmark (tracemux.bench.store_write) ----------------------
SPANS_STATEMENT = _SPANS
insert_rows = _insert_rows
executemany_rows = _executemany_rows
max_variables = _max_variables

# -- shared with the PostgreSQL store (tracemux.destinations.postgres): the same rows,
# filters and cursors, so that both stores give the same answers ----------------------
MAX_IDS_PER_QUERY = _MAX_IDS_PER_QUERY
RUN_FIELDS = _RUN_FIELDS
SPAN_FIELDS = _SPAN_FIELDS
STATUS_FILTERS = _STATUS_FILTERS
like_prefix = _like_prefix
parse_cursor = _parse_cursor
stored_run = _stored_run
stored_span = _stored_span
stored_run_row = _stored_run_row
stored_span_row = _stored_span_row
