"""Errors a user's input can cause in gan_core that live outside torch-free modules' own files.

Declared here, not in `data.py`, so that naming them imports no torch: the command line's error path
(`gan-sweep --help`, a one-line URL error) then starts in about a second instead of four."""

from __future__ import annotations


class DataError(RuntimeError):
    """A data set is unknown, missing or corrupt; the message is one line."""
