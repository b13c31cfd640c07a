"""Settings of the ``local`` auth provider (``[providers.auth]`` with ``type = "local"``)::

    [providers.auth]
    type = "local"
    issuer = "http://127.0.0.1:8080"      # where `sbt serve` is reached; the default matches [server]'s defaults
    audience = "sbt"
    token_lifetime_seconds = 3600

    [[providers.auth.machine_clients]]
    client_id = "billing-job"
    client_secret = { env = "SBT_BILLING_JOB_SECRET" }
    scopes = ["event/event_write"]
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from ..models import Secret
from ..models.scopes import ALL
from ..structure import Refusal

__all__ = ["DEFAULT_ISSUER", "LocalAuthSettings", "MachineClient"]

#: The issuer when none is configured: a constant, so `sbt token` in another process mints tokens the
#: server accepts. It is also the base of the advertised JWKS and token URLs; set ``issuer`` to the
#: public URL when serving elsewhere than [server]'s default host and port.
DEFAULT_ISSUER = "http://127.0.0.1:8080"

_CLIENT_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def _client_id(_: object, __: attrs.Attribute[Any], value: str) -> None:
    if not _CLIENT_ID.match(value):
        raise Refusal("must be 1-128 letters, digits, '.', '_' or '-'", repr(value))


def _scopes(_: object, __: attrs.Attribute[Any], value: tuple[str, ...]) -> None:
    for scope in value:
        if not scope or any(c.isspace() for c in scope):
            raise Refusal("must each be one word (scopes are space-separated in tokens)", repr(scope))


@attrs.frozen
class MachineClient:
    """A client allowed ``POST /oauth2/token`` with ``grant_type=client_credentials`` (SBT's machine client)."""

    client_id: str = attrs.field(validator=_client_id)
    client_secret: Secret
    scopes: tuple[str, ...] = attrs.field(default=ALL, validator=_scopes)


def _lifetime(_: object, __: attrs.Attribute[Any], value: int) -> None:
    if not 60 <= value <= 7 * 86400:
        raise Refusal("must be between 60 seconds and 7 days", repr(value))


def _clients(_: object, __: attrs.Attribute[Any], value: tuple[MachineClient, ...]) -> None:
    ids = [c.client_id for c in value]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"machine client id(s) {', '.join(dupes)} appear more than once")


@attrs.frozen
class LocalAuthSettings:
    """Validated ``[providers.auth]`` settings (``type = "local"``).

    - ``issuer``: ``iss`` of minted tokens and base of the advertised JWKS and token URLs; the public URL
      of the server when it is not reached at [server]'s default host and port.
    - ``audience``: ``aud`` of minted tokens, checked by the authorizer.
    - ``token_lifetime_seconds`` (seconds, 60 to 7 days): validity of a minted token.
    - ``machine_clients``: clients allowed ``POST /oauth2/token`` with ``client_credentials`` (SBT's
      machine client), each ``{client_id, client_secret, scopes}``.
    - ``enforce_scopes``: SBT's ``setAPIGWScopes``; false accepts any valid token on every route.
    - ``signing_key``: an RSA private key in PEM, as ``{ file = }`` or ``{ env = }``; every process given
      the same one verifies every other's tokens. None: a key generated in the state directory (one process).
    - ``previous_signing_keys``: PEMs of keys rotated out (private or public), published in the JWKS and
      accepted, never used to sign. Rotation without a 401 storm: the new key in ``signing_key``, the old
      one first here; remove it once ``token_lifetime_seconds`` has passed on every process.
    """

    issuer: str = DEFAULT_ISSUER
    audience: str = "sbt"
    token_lifetime_seconds: int = attrs.field(default=3600, validator=_lifetime)
    machine_clients: tuple[MachineClient, ...] = attrs.field(default=(), validator=_clients)
    enforce_scopes: bool = True
    signing_key: Secret | None = None
    previous_signing_keys: tuple[Secret, ...] = ()

    def client(self, client_id: str) -> MachineClient | None:
        """The machine client named ``client_id``, or None."""
        return next((c for c in self.machine_clients if c.client_id == client_id), None)
