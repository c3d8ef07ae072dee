"""stdout and stderr through `urls.mask`: what a library prints (MLflow's "View run ... at: <URL>",
a driver's warning, a traceback) cannot show a password the process was given."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TextIO

from sweeps import urls


class MaskedStream:
    """A text stream that masks each write before passing it on (a line split across writes is
    masked per write: a URL is written in one piece by every caller seen so far). Like the stream it
    wraps it takes text only, and its `buffer` takes bytes (masked too): click tells a binary stream by
    trying to write b"" to it, and then writes bytes to `buffer`."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self.inner.write(urls.mask(text))
        return len(text)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    @property
    def buffer(self) -> MaskedBuffer | None:
        inner = getattr(self.inner, "buffer", None)
        return None if inner is None else MaskedBuffer(inner, getattr(self.inner, "encoding", None) or "utf-8")

    def __getattr__(self, name: str):  # flush, isatty, fileno, encoding: the inner stream's
        return getattr(self.inner, name)


class MaskedBuffer:
    """The binary side of a MaskedStream: bytes decoded, masked and encoded again."""

    def __init__(self, inner, encoding: str) -> None:
        self.inner, self.encoding = inner, encoding

    def write(self, data: bytes) -> int:
        text = bytes(data).decode(self.encoding, errors="surrogateescape")
        self.inner.write(urls.mask(text).encode(self.encoding, errors="surrogateescape"))
        return len(data)

    def __getattr__(self, name: str):
        return getattr(self.inner, name)


@contextlib.contextmanager
def masked_streams() -> Iterator[None]:
    """Mask sys.stdout and sys.stderr for the duration (nested uses wrap once)."""
    if isinstance(sys.stdout, MaskedStream):
        yield
        return
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskedStream(saved[0]), MaskedStream(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
