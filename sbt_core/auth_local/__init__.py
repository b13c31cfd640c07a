"""The built-in ``local`` auth provider (the embedded default). Implemented in the runtime issue."""

from __future__ import annotations

from ..provider import Provider


class LocalAuth(Provider):
    """IAuth kept on this machine: users in SQLite, an RS256 key pair under the state directory."""
