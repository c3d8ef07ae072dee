"""Errors a user's input can cause in gan_core, declared where naming them imports no torch.

`DataError` is raised by `data.py` but declared here: the command line's error path
(`gan-sweep --help`, a one-line URL error) then starts in about a second instead of four."""

from __future__ import annotations


class DataError(RuntimeError):
    """A data set is unknown, missing or corrupt; the message is one line."""
