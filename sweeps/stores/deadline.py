"""A store server that stops answering ends the run in one line, within a stated time.

A PostgreSQL server that is stopped (SIGSTOP, a hung host) or cut off by the network keeps its TCP
connections open: the kernel still acknowledges what is sent, so neither TCP keepalives nor a server-side
statement timeout ever fire, and a query waits forever. The same holds for a stopped MLflow server. So
every round trip to a server-backed store is timed here, on the client: each statement on a SQLAlchemy
connection to a server (Optuna's storage), from the moment it is sent until the server's answer is in
(the Python work between two statements is not timed: a large study's first read can take a while on a
healthy server), each COMMIT, ROLLBACK (the pool's reset included) and ping, and every MLflow client
call against an http(s) tracking server.
A watchdog thread looks once a second; a call still unanswered after `timeout_s()` seconds ends the
process with one line on stderr and exit code 1, removing any half-written file first. Its records are
closed by the next invocation: the trial's heartbeat and the MLflow parent's go stale, and both are
retried or closed as for a killed process. sqlite stores are files, not servers, and are not timed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
import time
from typing import Any

STORE_TIMEOUT_S = 60
"""Seconds a store server may take to answer one call (a statement, a commit, an MLflow request)."""
CONNECT_TIMEOUT_S = 10
"""Seconds to open a connection to a PostgreSQL server (libpq's connect_timeout, a client-side timer)."""
ENV = "GAN_SWEEP_STORE_TIMEOUT"
"""Overrides STORE_TIMEOUT_S (seconds, 5 to 3600): a store busy for longer by design, or a test."""

_inflight: dict[int, tuple[float, str]] = {}
"""Calls in progress: a key (a DBAPI connection's id, or a call's own token) -> (start, what)."""
_lock = threading.Lock()
_watching: list[threading.Thread] = []
_installed: list[bool] = []
_names: dict[str, str] = {}
"""What to call each kind of store in the one line: {'sql': the storage URL masked}."""


def timeout_s() -> float:
    """The stated time: STORE_TIMEOUT_S, or GAN_SWEEP_STORE_TIMEOUT when it is a number from 5 to 3600."""
    try:
        value = float(os.environ.get(ENV, ""))
    except ValueError:
        return STORE_TIMEOUT_S
    return value if 5 <= value <= 3600 else STORE_TIMEOUT_S


def _expire(what: str, waited: float) -> None:
    from gan_core.files import remove_unfinished

    remove_unfinished()  # a write in progress in another thread leaves no temporary file behind
    print(f"error: {what} has not answered for {waited:.0f} s (a stopped server or a lost network): gan-sweep "
          f"stops here; once it answers, run the same command again (the trial in hand is retried when its "
          f"heartbeat goes stale)", file=sys.stderr)
    for stream in (sys.stderr, sys.stdout):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)


def _watch() -> None:
    while True:
        time.sleep(1.0)
        limit, now = timeout_s(), time.monotonic()
        with _lock:
            late = [(now - start, what) for start, what in _inflight.values() if now - start > limit]
        if late:
            _expire(late[0][1], late[0][0])


def _start() -> None:
    with _lock:
        if _watching:
            return
        thread = threading.Thread(target=_watch, daemon=True, name="gan-sweep-store-deadline")
        _watching.append(thread)
    thread.start()


def begin(key: int, what: str) -> None:
    _start()
    with _lock:
        _inflight[key] = (time.monotonic(), what)


def end(key: int) -> None:
    with _lock:
        _inflight.pop(key, None)


@contextlib.contextmanager
def timed(what: str):
    """Time one call to a store server (it must answer within `timeout_s()`)."""
    token = object()
    begin(id(token), what)
    try:
        yield
    finally:
        end(id(token))


def connect_args(url: str) -> dict[str, Any]:
    """The driver's own limits for a server URL, where the URL does not set them itself: for PostgreSQL
    (libpq) a connect timeout, TCP keepalives and a TCP user timeout, so a network that drops everything is
    noticed by the kernel. Nothing for sqlite. (No server-side statement timeout: PgBouncer and pooled
    endpoints refuse one at connection, and the watchdog times every round trip anyway.)"""
    if not url.startswith("postgresql"):
        return {}
    from sqlalchemy.engine import make_url

    given = make_url(url).query
    limits = {"connect_timeout": CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
              "keepalives_count": 3, "tcp_user_timeout": int(timeout_s() * 1000)}
    return {k: v for k, v in limits.items() if k not in given}


def _sql_name() -> str:
    """What the one line calls the database server (`install_sql` names it)."""
    return _names.get("sql", "the store's server")


def install_sql(url: str) -> None:
    """Time every round trip to a database server on any SQLAlchemy engine of this process (once per
    process; `url` names the server in the one line)."""
    from sweeps import urls

    _names["sql"] = f"the Optuna store {urls.mask(url)}"
    if _installed:
        return
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def key(conn) -> int | None:
        dbapi = conn.connection.dbapi_connection
        return None if dbapi is None or isinstance(dbapi, sqlite3.Connection) else id(dbapi)

    def sent(conn, *args) -> None:  # a statement goes to the server
        k = key(conn)
        if k is not None:
            begin(k, _sql_name())

    def answered(conn, *args) -> None:
        k = key(conn)
        if k is not None:
            end(k)

    def failed(context) -> None:
        dbapi = getattr(context.connection, "connection", None) if context.connection is not None else None
        raw = getattr(dbapi, "dbapi_connection", None)
        if raw is not None:
            end(id(raw))

    event.listen(Engine, "before_cursor_execute", sent)
    event.listen(Engine, "after_cursor_execute", answered)
    event.listen(Engine, "handle_error", failed)
    event.listen(Engine, "do_connect", lambda dialect, *args: _time_round_trips(dialect))
    _installed.append(True)


_ROUND_TRIPS = ("do_commit", "do_rollback", "do_ping", "initialize")
"""A server dialect's calls that wait for the server outside any statement, and so outside the cursor
events: COMMIT, ROLLBACK (also the pool's reset of every connection it takes back), a ping, and the
queries of a new engine's first connection. A frozen server caught in one of them, with no other call of
the process in flight, hung the run for good (seen under load: a COMMIT right after a trial was claimed)."""


def _time_round_trips(dialect: Any) -> None:
    """Time a server dialect's own round trips (once per dialect, the first time it connects: before any
    of them can run). SQLAlchemy has events before some of them and after none, so each is wrapped."""
    if dialect.name == "sqlite" or getattr(dialect, "_gan_sweep_timed", False):
        return
    for name in _ROUND_TRIPS:
        def call(*args, _inner=getattr(dialect, name), **kwargs):
            with timed(_sql_name()):
                return _inner(*args, **kwargs)

        setattr(dialect, name, call)
    dialect._gan_sweep_timed = True


class TimedClient:
    """An MLflow client whose every call is timed (for an http(s) tracking server)."""

    def __init__(self, client: Any, what: str) -> None:
        self._client, self._what = client, what

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args, **kwargs):
            with timed(self._what):
                return attr(*args, **kwargs)

        return call
