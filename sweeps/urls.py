"""Store URLs, parsed once: their kind, a sqlite file's path, and a form safe to print.

Every URL a command prints, writes or puts in an error goes through `mask` (a password never
leaves the process). A sqlite URL must name a file: `sqlite://`, `sqlite:///` and `:memory:`
would run every trial and then lose all results when the process ends.
"""

from __future__ import annotations

import re
import urllib.parse
from pathlib import Path

from sweeps.errors import UserError

STORAGE_SCHEMES = ("sqlite", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")
"""MySQL is left out: its planner lock, timeouts and frozen-server handling are not built or tested here."""
TRACKING_SCHEMES = ("sqlite", "http", "https")
# user:password@ in any URL. The password runs to the token's last '@' (SQLAlchemy takes a raw '/' in
# it, and a raw '@' is split differently by each library): masking too much is safe, too little is not.
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s'\"]*):(?P<password>[^\s'\"]*)@", re.I)
# token@ in an http(s) URL: a tracking server's token rides in the URL as a user name without a password
# (requests sends it as basic auth), so the whole userinfo is the secret there.
_TOKEN = re.compile(r"(?P<scheme>https?://)(?P<token>[^:/@\s'\"?#]+)@", re.I)
# password=... as a URL's query parameter or a libpq keyword.
_PASSWORD_PARAM = re.compile(r"(?P<key>\b(?:password|passwd|pwd)=)(?P<password>[^&\s'\";#]*)", re.I)
_SECRETS: set[str] = set()
"""Passwords of the store URLs this process was given, hidden wherever a library quotes one bare."""
_MIN_BARE = 3  # a shorter password replaced everywhere in a text would blank ordinary characters


def credentials(url: str) -> tuple[str | None, list[str]]:
    """(the userinfo's password, the query's passwords) of a URL as the most permissive parser reads them.
    In an http(s) URL a user name without a password is a token, and is the password here."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    head, _, query = rest.partition("?")
    password = None
    if "@" in head:
        userinfo = head[:head.rindex("@")]
        if ":" in userinfo:
            password = userinfo.split(":", 1)[1]
        elif scheme(url) in ("http", "https") and userinfo:
            password = userinfo
    params = [m["password"] for m in _PASSWORD_PARAM.finditer("?" + query)] if query else []
    return password, params


def remember(url: str) -> None:
    """Hide this URL's passwords from every later `mask` (and so from everything the process prints,
    stores or writes), also where a library's message quotes one without its URL."""
    password, params = credentials(url)
    for secret in [password, *params]:
        if secret:
            for form in (secret, urllib.parse.unquote(secret), urllib.parse.quote(secret, safe="")):
                if len(form) >= _MIN_BARE:
                    _SECRETS.add(form)


def mask(text: str, *known: str) -> str:
    """`text` with every password hidden: user:***@host in URLs (***@host for an http(s) token), password=*** in queries and keyword
    strings, and the bare passwords of the `known` URLs and of every URL given to `remember`."""
    for url in known:
        remember(url)
    text = _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", str(text))
    text = _TOKEN.sub(lambda m: f"{m['scheme']}***@", text)
    text = _PASSWORD_PARAM.sub(lambda m: f"{m['key']}***", text)
    for secret in sorted(_SECRETS, key=len, reverse=True):  # longest first: a form never leaves a tail
        text = text.replace(secret, "***")
    return text


def without_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL with its user:password@ removed, and the (user, password) pair if there was one."""
    parts = split(url)
    if parts.username is None and parts.password is None:
        return url, None
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    bare = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    return bare, (urllib.parse.unquote(parts.username or ""), urllib.parse.unquote(parts.password or ""))


def split(url: str) -> urllib.parse.SplitResult:
    """The URL's parts, with its port read: a malformed host or port is one line, not a ValueError."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - reading it is the check
    except ValueError as exc:
        raise UserError(f"URL {mask(url)!r} is malformed ({exc})") from None
    return parts


def scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def _check_sql(url: str) -> None:
    """A database URL as SQLAlchemy (Optuna's parser) reads it: a malformed host or port is one line."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        make_url(url).port  # noqa: B018 - reading it is the check
    except (ArgumentError, ValueError) as exc:
        raise UserError(f"URL {mask(url)!r} is malformed ({mask(str(exc))})") from None


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
    remember(url)
    if scheme(url) not in schemes:
        raise UserError(f"{what} {mask(url)!r} is not supported (use {example})")
    if scheme(url) in ("http", "https") and credentials(url)[0] is not None:
        # requests splits the host at the first '/' or '?' (and urllib at the last '@'): a raw one in the
        # password would send its tail to another host as a path
        head = url.split("://", 1)[1]
        if head.index("@") != head.rindex("@") or any(c in head[:head.rindex("@")] for c in "/?#"):
            raise UserError(f"{what} {mask(url)!r}: a '/', '@', '?' or '#' in the password must be "
                            f"percent-encoded (%2F, %40, %3F, %23)")
    if scheme(url) in ("http", "https"):
        split(url)
    elif scheme(url) != "sqlite":
        _check_sql(url)
    path = sqlite_path(url)
    if path is not None:
        folder = path.resolve().parent
        if not folder.is_dir():
            raise UserError(f"{what} {mask(url)}: folder {folder} does not exist")
        if path.exists() and not path.is_file():
            raise UserError(f"{what} {mask(url)}: {path} is not a file")
    return path


ARTIFACTS = "mlartifacts"
"""A sqlite tracking store's artifacts go in this folder beside the database file."""


def artifact_folder(tracking_uri: str) -> Path | None:
    """Where a sqlite tracking store's artifacts go (None for a server, which decides for itself)."""
    db = sqlite_path(tracking_uri)
    return None if db is None else db.resolve().parent / ARTIFACTS


def check_storage(url: str) -> Path | None:
    """An Optuna storage URL's form (nothing opened, nothing imported beyond this module)."""
    return check(url, "storage URL", STORAGE_SCHEMES, "sqlite:///file.db or postgresql://user@host/db")


def check_tracking(uri: str) -> Path | None:
    """An MLflow tracking URI's form (nothing opened, nothing imported beyond this module)."""
    return check(uri, "tracking URI", TRACKING_SCHEMES, "sqlite:///mlflow.db or http://host:port")


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
