"""The rollout's one error class."""

from __future__ import annotations


class RolloutError(Exception):
    """A rollout that is refused or cannot go on; the message says what to do. Exit status 1."""
