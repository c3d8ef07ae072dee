"""Store URLs, parsed once: their kind, a sqlite file's path, and a form safe to print.

Every URL a command prints, writes or puts in an error goes through `mask` (a password never
leaves the process). A sqlite URL must name a file: `sqlite://`, `sqlite:///` and `:memory:`
would run every trial and then lose all results when the process ends.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from .errors import UserError

STORAGE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2", "mysql", "mysql+pymysql")
TRACKING_SCHEMES = ("sqlite", "http", "https")
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<password>[^@/\s]*)@", re.I)


def mask(text: str, *known: str) -> str:
    """`text` with the password of every URL in it replaced by ***: user:***@host. The passwords of the
    `known` URLs are also hidden where a library's message quotes them without their URL."""
    text = _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))
    for url in known:
        password = urllib.parse.urlsplit(url).password if "://" in url else None
        if password:
            text = text.replace(password, "***").replace(urllib.parse.quote(password, safe=""), "***")
    return text


def without_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL with its user:password@ removed, and the (user, password) pair if there was one."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    bare = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, (urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or ""))


def scheme(url: str) -> str:
    return urllib.parse.urlsplit(url).scheme.lower() if "://" in url else ""


def sqlite_path(url: str) -> Path | None:
    """The database file of a sqlite URL (None for other schemes); a URL that names no file is an error."""
    if scheme(url) != "sqlite":
        return None
    if not url.startswith("sqlite:///"):
        raise UserError(f"sqlite URL {mask(url)!r} names no file: use sqlite:///file.db (a relative path) or "
                        f"sqlite:////abs/path.db")
    raw = url[len("sqlite:///"):]
    if not raw or raw == ":memory:" or raw.startswith(":memory:") or raw.startswith("file::memory:"):
        raise UserError(f"sqlite URL {mask(url)!r} names no file (an in-memory store loses every result when the "
                        f"command ends): use sqlite:///file.db")
    return Path(raw)


def check(url: str, what: str, schemes: tuple[str, ...], example: str) -> Path | None:
    """A URL's form: a supported scheme and, for sqlite, a file whose folder exists (nothing opened)."""
    if scheme(url) not in schemes:
        raise UserError(f"{what} {mask(url)!r} is not supported (use {example})")
    path = sqlite_path(url)
    if path is not None:
        folder = path.resolve().parent
        if not folder.is_dir():
            raise UserError(f"{what} {mask(url)}: folder {folder} does not exist")
        if path.exists() and not path.is_file():
            raise UserError(f"{what} {mask(url)}: {path} is not a file")
    return path


def sqlite_tables(path: Path) -> set[str]:
    """Table names of an existing sqlite file, read-only (empty when it is not a database)."""
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
        try:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            con.close()
    except sqlite3.Error:
        return set()


OPTUNA_TABLES = {"studies", "trials", "version_info"}
MLFLOW_TABLES = {"experiments", "runs", "metrics"}


def check_not_swapped(storage: str, tracking: str) -> None:
    """An Optuna URL that points at MLflow's database (or the reverse) would mix both schemas in one file."""
    s, t = sqlite_path(storage), sqlite_path(tracking)
    if s is not None and t is not None and s.resolve() == t.resolve():
        raise UserError(f"--storage and --tracking-uri name the same file ({s}); give each its own database")
    if s is not None and s.is_file() and MLFLOW_TABLES <= sqlite_tables(s):
        raise UserError(f"storage {mask(storage)} is an MLflow database (are --storage and --tracking-uri swapped?)")
    if t is not None and t.is_file() and OPTUNA_TABLES <= sqlite_tables(t):
        raise UserError(f"tracking URI {mask(tracking)} is an Optuna database (are --storage and --tracking-uri "
                        f"swapped?)")
