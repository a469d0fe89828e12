"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (a bad file, an impossible setting). The CLI
prints its message as one paragraph and exits with code 2, without a traceback. Internal
invariants use ``assert``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input: the message says what is wrong, where, and how to fix it."""

    exit_code = 2


class DataError(UserError):
    """A dataset file breaks the canonical schema (the message names file, row and field)."""


class ConfigError(UserError):
    """A configuration value is missing, unknown, of the wrong type, or impossible."""
