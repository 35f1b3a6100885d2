"""The one error type of ``forenx.hub``: something the user can fix, said in one message."""

from __future__ import annotations

__all__ = ["ReleaseError"]


class ReleaseError(Exception):
    """A release or upload the user asked for cannot be done; the message says why and how to fix it."""
