"""A store server that stops answering ends the run in one line, within a stated time.

A PostgreSQL server that is stopped (SIGSTOP, a hung host) or cut off by the network keeps its TCP
connections open: the kernel still acknowledges what is sent, so neither TCP keepalives nor a server-side
statement timeout ever fire, and a query waits forever. The same holds for a stopped MLflow server. So
every call into a server-backed store is timed here, on the client: a SQLAlchemy connection checked out
of its pool (Optuna's storage: every statement and commit runs on one) and every MLflow client call
against an http(s) tracking server. A watchdog thread looks once a second; a call still unanswered after
`timeout_s()` seconds ends the process with one line on stderr and exit code 1. Its records are closed by
the next invocation: the trial's heartbeat and the MLflow parent's go stale, and both are retried or
closed as for a killed process. sqlite stores are files, not servers, and are not timed.

The few waits that are long by design (a planner's advisory lock held across its whole plan) are exempt
and time their own statements instead.
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
"""Calls in progress: a key (a pooled connection's record, or a call's own token) -> (start, what)."""
_exempt: set[int] = set()
_records: dict[int, int] = {}
"""A checked-out DBAPI connection's id -> its pool record's key (a planner exempts its connection by it)."""
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
            late = [(now - start, what) for key, (start, what) in _inflight.items()
                    if key not in _exempt and now - start > limit]
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
        _exempt.discard(key)


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
    """libpq's own limits for a PostgreSQL URL: a connect timeout; keepalives and a TCP user timeout, so a
    network that drops everything is noticed by the kernel; and a server-side statement timeout for a server
    that is alive but stuck (a frozen one is the watchdog's). Nothing for other URLs."""
    if not url.startswith("postgresql"):
        return {}
    ms = int(timeout_s() * 1000)
    return {"connect_timeout": CONNECT_TIMEOUT_S, "keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
            "keepalives_count": 3, "tcp_user_timeout": ms, "options": f"-c statement_timeout={ms}"}


def install_sql(url: str) -> None:
    """Time every connection checked out of any SQLAlchemy pool to a database server (once per process;
    `url` names the server in the one line)."""
    from sweeps import urls

    _names["sql"] = f"the Optuna store {urls.mask(url)}"
    if _installed:
        return
    import sqlite3

    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    def checkout(dbapi_connection, record, proxy) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            with _lock:
                _records[id(dbapi_connection)] = id(record)
            begin(id(record), _names.get("sql", "the store's server"))

    def checkin(dbapi_connection, record) -> None:  # dbapi_connection is None once invalidated: keyed by record
        with _lock:
            for conn, key in [(c, k) for c, k in _records.items() if k == id(record)]:
                del _records[conn]
        end(id(record))

    event.listen(Pool, "checkout", checkout)
    event.listen(Pool, "checkin", checkin)
    _installed.append(True)


def exempt(connection) -> None:
    """A SQLAlchemy Connection held by design for longer than any call (a planner's lock): its checkout is
    not timed; its own statements must run under `timed`."""
    with _lock:
        key = _records.get(id(connection.connection.dbapi_connection))
        if key is not None:
            _exempt.add(key)


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
