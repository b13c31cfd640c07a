"""The one family of errors sbt raises.

Every error a provider or the core raises for a caller to see is an :class:`SbtError`. Its ``status``
is the HTTP status the API answers with (docs/design.md section 4) and its message is what the caller reads
in ``{"message": ...}``; so a message never carries a secret. ``retryable`` tells the event bus whether
delivering the same event again may succeed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "BadRequestError",
    "ConfigError",
    "ConflictError",
    "ForbiddenError",
    "NotFoundError",
    "NotImplementedHookError",
    "PayloadTooLargeError",
    "PluginError",
    "ProviderError",
    "SbtError",
    "StartupError",
    "UnauthorizedError",
    "UnavailableError",
]


class SbtError(Exception):
    """Base of every sbt error. ``status`` is the HTTP status; ``message`` is safe to show."""

    status: int = 500
    retryable: bool = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequestError(SbtError):
    """400: the input is malformed or breaks a rule of the contract. Never retried."""

    status = 400


class UnauthorizedError(SbtError):
    """401: no bearer token, or one that fails verification."""

    status = 401


class ForbiddenError(SbtError):
    """403: a valid token that lacks the route's scope."""

    status = 403


class NotFoundError(SbtError):
    """404: the id names nothing the provider knows."""

    status = 404


class ConflictError(SbtError):
    """409: the thing exists already, or the request clashes with its current state."""

    status = 409


class PayloadTooLargeError(SbtError):
    """413: the request body is larger than the configured limit."""

    status = 413


class NotImplementedHookError(SbtError):
    """501: the selected provider does not implement this optional hook."""

    status = 501


class ProviderError(SbtError):
    """502: the provider's backend failed (network, 5xx, throttling after retries). Retried by the bus."""

    status = 502
    retryable = True


class UnavailableError(SbtError):
    """503: the control plane cannot store the request right now (its disk failed or is full); nothing of
    it was accepted, so the caller may send it again."""

    status = 503
    retryable = True


class ConfigError(SbtError):
    """The configuration has one or more problems; ``problems`` lists each with its dotted path."""

    status = 400

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("; ".join(self.problems) if self.problems else "invalid configuration")

    @classmethod
    def collect(cls, problems: Iterable[str]) -> ConfigError | None:
        """An error holding ``problems``, or None when there are none."""
        found = list(problems)
        return cls(found) if found else None


class PluginError(SbtError):
    """A plugin failed to load or to validate; names the plugin (pluggy's PluginValidationError, with the name)."""

    status = 500

    def __init__(self, plugin: str, message: str) -> None:
        self.plugin = plugin
        super().__init__(f"plugin {plugin!r}: {message}")


class StartupError(SbtError):
    """The control plane cannot start: a selected provider misses a required hook, bindings clash, …"""

    status = 500
