"""Errors a user can fix. The CLI prints them as one line and exits with status 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UsageError(ValueError):
    """Bad input: the message says what was wrong and what to do."""


def did_you_mean(word: str, choices: Iterable[str], n: int = 3) -> str:
    """'; did you mean 'ln'?' or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(choices), n=n, cutoff=0.5)
    if not close:
        return ""
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?"
