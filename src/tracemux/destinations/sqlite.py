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
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import orjson
import platformdirs

from tracemux.destinations.base import Destination, ExportError
from tracemux.model import Record, RunInfo, RunStart, SpanRecord, format_span_id

log = logging.getLogger("tracemux.destinations.sqlite")

SCHEMA_VERSION = 1

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
_RUN_START = (
    "INSERT INTO runs (run_id, trace_id, name, user_id, session_id, project, tags, metadata,"
    " start_ns)",
    """ON CONFLICT (run_id) DO UPDATE SET
    name = excluded.name, user_id = excluded.user_id, session_id = excluded.session_id,
    project = excluded.project, tags = excluded.tags, metadata = excluded.metadata,
    start_ns = MIN(runs.start_ns, excluded.start_ns)""",
    9,
)
_SPANS = (
    """INSERT OR REPLACE INTO spans
    (run_id, span_id, parent_id, name, kind, start_ns, end_ns, status,
     inputs, outputs, metadata, logs, usage, model, error)""",
    "",
    15,
)
_RUN_COUNTS = (
    """INSERT INTO runs (run_id, trace_id, name, user_id, session_id, project, tags, metadata,
                  start_ns, span_count, error_count, input_tokens, output_tokens)""",
    """ON CONFLICT (run_id) DO UPDATE SET
    span_count = runs.span_count + excluded.span_count,
    error_count = runs.error_count + excluded.error_count,
    input_tokens = runs.input_tokens + excluded.input_tokens,
    output_tokens = runs.output_tokens + excluded.output_tokens,
    start_ns = MIN(runs.start_ns, excluded.start_ns)""",
    13,
)
# The run ends: an update of rows that exist (the counts above were just written), as an
# upsert so that many of them fit in one statement.
_RUN_END = (
    "INSERT INTO runs (run_id, trace_id, start_ns, end_ns, status, inputs, outputs, error)",
    """ON CONFLICT (run_id) DO UPDATE SET
    end_ns = excluded.end_ns, status = excluded.status, inputs = excluded.inputs,
    outputs = excluded.outputs, error = excluded.error, start_ns = excluded.start_ns""",
    8,
)
_ROWS_PER_STATEMENT = (1024, 256, 64, 16, 4, 1)


def _max_variables(conn: sqlite3.Connection) -> int:
    getlimit = getattr(conn, "getlimit", None)  # Python 3.11+
    if getlimit is not None:
        return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    return 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


@functools.lru_cache(maxsize=64)
def _values_sql(head: str, tail: str, columns: int, rows: int) -> str:
    row = "(" + ",".join("?" * columns) + ")"
    return f"{head} VALUES {','.join([row] * rows)} {tail}"


def _insert_rows(
    conn: sqlite3.Connection,
    statement: tuple[str, str, int],
    rows: Sequence[Sequence[Any]],
    max_variables: int,
) -> None:
    """Write ``rows`` with a few multi-row statements (of 1024, 256, 64, 16, 4 and 1 rows, so
    that each statement's text is compiled once and then cached).

    Not ``executemany``: the sqlite3 module releases the GIL around every row's step, and
    a busy application thread then keeps it for up to the switch interval (5 ms) before
    this thread gets it back. A 2,000-row batch took seconds that way, all of it holding
    the write lock and the fork guard.
    """
    head, tail, columns = statement
    chain = itertools.chain.from_iterable
    i, n = 0, len(rows)
    for size in _ROWS_PER_STATEMENT:
        if size * columns > max_variables:
            continue
        sql = _values_sql(head, tail, columns, size)
        while n - i >= size:
            conn.execute(sql, list(chain(rows[i : i + size])))
            i += size


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


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the fork guard, rolled back on error."""
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
        yield
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
        """The newest runs first, optionally filtered (``search`` matches name or run id)."""
        where, args = _run_filters(search, status, user_id, session_id)
        sql = f"SELECT * FROM runs {where} ORDER BY start_ns DESC LIMIT ? OFFSET ?"
        try:
            cols, rows = self._query(sql, [*args, int(limit), int(offset)])
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [_stored_run(dict(zip(cols, row))) for row in rows]

    def count_runs(
        self,
        *,
        search: str | None = None,
        status: str | None = None,
        user_id: str | None = None,
        session_id: str | None = None,
    ) -> int:
        """How many runs match the same filters as :meth:`runs`."""
        where, args = _run_filters(search, status, user_id, session_id)
        try:
            _, rows = self._query(f"SELECT COUNT(*) FROM runs {where}", args)
        except sqlite3.OperationalError:
            return 0
        return int(rows[0][0]) if rows else 0

    def run(self, run_id: str) -> StoredRun | None:
        """One run by id (a unique prefix of the id is enough), or None."""
        try:
            cols, rows = self._query(
                "SELECT * FROM runs WHERE run_id = ? OR run_id LIKE ? "
                "ORDER BY run_id = ? DESC LIMIT 2",
                (run_id, _like_prefix(run_id), run_id),
            )
        except sqlite3.OperationalError:
            return None
        if not rows:
            return None
        first = dict(zip(cols, rows[0]))
        if first["run_id"] != run_id and len(rows) > 1:
            return None  # ambiguous prefix
        return _stored_run(first)

    def spans(self, run_id: str) -> list[StoredSpan]:
        """The run's spans, in start order, with parent ids, values, logs and usage."""
        try:
            cols, rows = self._query(
                "SELECT * FROM spans WHERE run_id = ? ORDER BY start_ns, span_id", (run_id,)
            )
        except sqlite3.OperationalError:
            return []
        return [_stored_span(dict(zip(cols, row))) for row in rows]


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _run_filters(
    search: str | None, status: str | None, user_id: str | None, session_id: str | None
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    args: list[Any] = []
    if search:
        clauses.append("(name LIKE ? ESCAPE '\\' OR run_id LIKE ? ESCAPE '\\')")
        pattern = "%" + _like_prefix(search)
        args += [pattern, pattern]
    if status:
        clauses.append("status = ?")
        args.append(status)
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
                with _write_transaction(conn):
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            with _fork_guard:
                _close(conn)
            raise
        return conn

    def export(self, batch: Sequence[Record]) -> None:
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
        conn = self.conn
        try:
            with _write_transaction(conn):
                self._write(conn, starts, spans, counts, ends)
        except sqlite3.Error as exc:  # _write_transaction rolled back
            # disk full, read-only, locked: keep the batch and try again later
            raise ExportError(f"sqlite write failed: {exc}", retryable=True) from None
        now = time.monotonic()
        if now - self._last_prune >= self.store.prune_every:
            self._last_prune = now
            self.prune()

    def _write(
        self,
        conn: sqlite3.Connection,
        starts: list[Any],
        spans: list[Any],
        counts: dict[str, list[Any]],
        ends: list[Any],
    ) -> None:
        limit = self._max_variables
        if starts:
            _insert_rows(conn, _RUN_START, starts, limit)
        if spans:
            _insert_rows(conn, _SPANS, spans, limit)
            _insert_rows(conn, _RUN_COUNTS, list(counts.values()), limit)
        if ends:
            _insert_rows(conn, _RUN_END, ends, limit)

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
            with _write_transaction(conn):
                conn.executemany("DELETE FROM spans WHERE run_id = ?", old)
                conn.executemany("DELETE FROM runs WHERE run_id = ?", old)
            log.debug("tracemux: pruned %d runs from %s", len(old), store.path)
            return len(old)
        except sqlite3.Error as exc:  # _write_transaction rolled back
            log.warning("tracemux: pruning %s failed: %s", store.path, exc)
            return 0

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error), _fork_guard:
            _close(self.conn)
