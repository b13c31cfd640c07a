"""The JWT authorizer of the control-plane API (docs/design.md section 4).

Mirrors API Gateway's ``HttpJwtAuthorizer`` that sbt-aws puts in front of every route
(sbt-aws ``src/control-plane/control-plane-api.ts``): a bearer token is verified against the selected auth provider's
issuer, audience and JWKS, then the route's scope is looked up in the token's ``scope`` claim
(space-separated; ``scp`` as a string or list is accepted too). ``AuthSettings.enforce_scopes`` is
SBT's ``setAPIGWScopes``: False skips the scope check (tokens are still verified).

Checks, in order: bearer header present; header ``alg`` is one of ``AuthSettings.algorithms`` *and*
asymmetric (RS256/ES256 family: ``none`` and every HS* are refused, so a token MACed with the public
key never verifies); the signing key is found by ``kid`` in the JWKS (an unknown ``kid`` triggers one
rate-limited refetch, as keys rotate); signature, ``exp`` (required), ``nbf``, ``iss``; ``aud`` in the
audience list or, for access tokens without ``aud`` (Cognito), ``client_id`` in it; ``token_use`` when
the settings name one. Every failure is a :class:`~sbt_core.errors.UnauthorizedError` (401) whose
message says what was wrong but never echoes the token; a missing scope is a
:class:`~sbt_core.errors.ForbiddenError` (403).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpx
import jwt
from jwt import PyJWK, PyJWKSet

from ..errors import ForbiddenError, UnauthorizedError
from ..models import AuthSettings

__all__ = ["ASYMMETRIC_ALGORITHMS", "Authorizer", "JwksSource", "RemoteJwks", "StaticJwks", "bearer_token",
           "token_scopes"]

log = logging.getLogger("sbt.authorizer")

#: The only algorithms ever accepted, whatever the settings say: asymmetric ones. HS* would let anyone
#: holding the (public) JWKS forge a token; ``none`` is no signature at all.
ASYMMETRIC_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"})

#: Leeway for ``exp``/``nbf`` in seconds: clocks of the issuer and of this host differ a little.
DEFAULT_LEEWAY_SECONDS = 30.0


class JwksSource(Protocol):
    """Where the authorizer finds signing keys by ``kid``."""

    def get_key(self, kid: str | None) -> PyJWK | None:
        """The key for ``kid`` (None: the only key, when the set holds exactly one), or None if unknown."""

    def has_key(self, kid: str | None) -> bool:
        """Whether :meth:`get_key` would answer without I/O (so it may run on the event loop)."""


def _keyset(data: Mapping[str, Any]) -> dict[str | None, PyJWK]:
    """``{kid: PyJWK}`` of a JWKS document; keys PyJWT cannot use (e.g. ``oct``, unknown kty) are skipped."""
    keys: dict[str | None, PyJWK] = {}
    try:
        jwk_set = PyJWKSet.from_dict(dict(data))
    except jwt.PyJWKSetError as exc:
        log.warning("JWKS holds no usable key: %s", exc)
        return keys
    for key in jwk_set.keys:
        if key.key_type in ("RSA", "EC"):  # never accept a symmetric key from a key set
            keys[key.key_id] = key
    return keys


def _pick(keys: Mapping[str | None, PyJWK], kid: str | None) -> PyJWK | None:
    if kid is None:
        return next(iter(keys.values())) if len(keys) == 1 else None
    return keys.get(kid)


class StaticJwks:
    """An in-process JWKS (the ``local`` provider's): ``source`` is the JWKS dict or a callable returning it,
    re-read when a ``kid`` is unknown (the local key may have been created after start-up)."""

    def __init__(self, source: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> None:
        self._source = source
        self._keys = _keyset(source() if callable(source) else source)

    def has_key(self, kid: str | None) -> bool:
        return _pick(self._keys, kid) is not None

    def get_key(self, kid: str | None) -> PyJWK | None:
        key = _pick(self._keys, kid)
        if key is None and callable(self._source):
            self._keys = _keyset(self._source())
            key = _pick(self._keys, kid)
        return key


class RemoteJwks:
    """A JWKS fetched over HTTPS with httpx, cached for ``ttl_seconds``; an unknown ``kid`` refetches at most
    once per ``min_refresh_seconds`` (so a flood of forged ``kid`` values cannot hammer the issuer)."""

    def __init__(self, url: str, *, ttl_seconds: float = 600.0, min_refresh_seconds: float = 30.0,
                 timeout_seconds: float = 5.0, client: httpx.Client | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.url = url
        self.ttl_seconds = ttl_seconds
        self.min_refresh_seconds = min_refresh_seconds
        self._client = client or httpx.Client(timeout=timeout_seconds, follow_redirects=False)
        self._clock = clock
        self._keys: dict[str | None, PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = threading.Lock()

    def _fresh(self) -> bool:
        return self._fetched_at is not None and self._clock() - self._fetched_at < self.ttl_seconds

    def has_key(self, kid: str | None) -> bool:
        return self._fresh() and _pick(self._keys, kid) is not None

    def _fetch(self) -> None:
        try:
            response = self._client.get(self.url, headers={"accept": "application/json"})
            response.raise_for_status()
            data = response.json()
            if not isinstance(data, dict):
                raise ValueError("JWKS is not a JSON object")
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("cannot fetch JWKS from %s: %s", self.url, exc)
            self._fetched_at = self._fetched_at if self._keys else None
            raise UnauthorizedError("cannot verify the token: the issuer's signing keys are unavailable") from None
        self._keys = _keyset(data)
        self._fetched_at = self._clock()

    def get_key(self, kid: str | None) -> PyJWK | None:
        with self._lock:
            if not self._fresh():
                self._fetch()
            key = _pick(self._keys, kid)
            if key is None and self._fetched_at is not None \
                    and self._clock() - self._fetched_at >= self.min_refresh_seconds:
                self._fetch()  # keys rotated: the new kid is not in our copy yet
                key = _pick(self._keys, kid)
            return key


#: RFC 7519 section 4.1: registered claims whose value is a NumericDate (seconds since the epoch).
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")


def _check_numeric_dates(claims: Mapping[str, Any]) -> None:
    """Refuse a registered date claim that is not a finite JSON number (a string, a bool, NaN...).

    :raises UnauthorizedError: ``invalid token: the exp claim must be a number (RFC 7519 NumericDate)``.
    """
    for name in NUMERIC_DATE_CLAIMS:
        if name not in claims:
            if name == "exp":
                raise UnauthorizedError("invalid token: the exp claim is missing")
            continue
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UnauthorizedError(f"invalid token: the {name} claim must be a number (RFC 7519 NumericDate)")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header; raises UnauthorizedError (401)."""
    if not authorization:
        raise UnauthorizedError("missing bearer token (Authorization: Bearer <token>)")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UnauthorizedError("the Authorization header must be 'Bearer <token>'")
    return token


def token_scopes(claims: Mapping[str, Any]) -> set[str]:
    """Scopes a token grants: ``scope`` (space-separated, OAuth 2 / Cognito) and ``scp`` (string or list,
    Okta/Azure)."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return found


class Authorizer:
    """Verifies bearer JWTs against one auth provider's :class:`AuthSettings` and checks route scopes."""

    def __init__(self, settings: AuthSettings, jwks: JwksSource | None = None, *,
                 leeway_seconds: float = DEFAULT_LEEWAY_SECONDS, cache_size: int = 1024,
                 cache_seconds: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.jwks: JwksSource = jwks or RemoteJwks(settings.resolved_jwks_url)
        self.leeway_seconds = leeway_seconds
        # Verified tokens, so a client reusing its token does not pay an RSA verification per request
        # (API Gateway caches authorizer results too). exp/nbf are re-checked on every hit; an entry
        # lives at most cache_seconds, which bounds how long a key removed from the JWKS is still honoured.
        self.cache_size = cache_size
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self._cache_lock = threading.Lock()
        self.algorithms = [a for a in settings.algorithms if a in ASYMMETRIC_ALGORITHMS]
        if not self.algorithms:
            raise ValueError(f"no usable JWT algorithm in {settings.algorithms!r}; "
                             f"use one of {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}")
        self.audience = set(settings.jwt_audience)

    def needs_io(self, token: str) -> bool:
        """Whether verifying ``token`` may fetch keys (the HTTP app then verifies in a worker thread)."""
        if token in self._cache:
            return False
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            return False
        return not self.jwks.has_key(kid)

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``.

        :raises UnauthorizedError: any check fails (the message names which, never the token).
        """
        now = self._clock()
        with self._cache_lock:
            hit = self._cache.get(token)
        if hit is not None and now - hit[1] < self.cache_seconds:
            claims = hit[0]
            self._check_times(claims, now)
            return dict(claims)
        claims = self._verify(token)
        with self._cache_lock:
            self._cache[token] = (claims, now)
            self._cache.move_to_end(token)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return dict(claims)

    def _check_times(self, claims: Mapping[str, Any], now: float) -> None:
        """``exp`` (required) and ``nbf`` against ``now``; run on every verification and every cache hit,
        so a cached answer never outlives the token's ``exp``."""
        _check_numeric_dates(claims)
        exp, nbf = claims["exp"], claims.get("nbf")
        if now > exp + self.leeway_seconds:
            raise UnauthorizedError("invalid token: expired")
        if nbf is not None and now < nbf - self.leeway_seconds:
            raise UnauthorizedError("invalid token: not yet valid (nbf/iat in the future)")

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise UnauthorizedError("invalid token: not a JWT") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise UnauthorizedError(f"invalid token: algorithm {alg!r} is not accepted "
                                    f"(accepted: {', '.join(self.algorithms)})")
        kid = header.get("kid")
        key = self.jwks.get_key(kid if isinstance(kid, str) else None)
        if key is None:
            raise UnauthorizedError("invalid token: signed by an unknown key")
        # The key's own algorithm family must match the header: an RSA key never verifies ES256 and v.v.
        if (key.key_type == "RSA") != alg.startswith(("RS", "PS")):
            raise UnauthorizedError("invalid token: the algorithm does not match the signing key")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], issuer=self.settings.jwt_issuer, leeway=self.leeway_seconds,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthorizedError("invalid token: expired") from None
        except jwt.ImmatureSignatureError:
            raise UnauthorizedError("invalid token: not yet valid (nbf/iat in the future)") from None
        except jwt.InvalidIssuerError:
            raise UnauthorizedError("invalid token: wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise UnauthorizedError(f"invalid token: the {exc.claim} claim is missing") from None
        except jwt.InvalidSignatureError:
            raise UnauthorizedError("invalid token: bad signature") from None
        except jwt.PyJWTError as exc:
            raise UnauthorizedError(f"invalid token: {type(exc).__name__}") from None
        except (ValueError, TypeError, OverflowError):  # PyJWT's int() of an exp/nbf/iat of NaN, Infinity...
            raise UnauthorizedError("invalid token: a date claim is not a number (RFC 7519 NumericDate)") from None
        # PyJWT converts a numeric string ("exp": "1700000000") with int(); RFC 7519 says NumericDate.
        _check_numeric_dates(claims)
        self._check_audience(claims)
        if self.settings.token_use is not None and claims.get("token_use") != self.settings.token_use:
            # E.g. a Cognito id token presented to an access-token route; providers whose tokens carry
            # no token_use set AuthSettings.token_use to None.
            raise UnauthorizedError(f"invalid token: token_use must be {self.settings.token_use!r}")
        return claims

    def _check_audience(self, claims: Mapping[str, Any]) -> None:
        aud = claims.get("aud")
        if aud is not None:
            values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
            if not self.audience.intersection(v for v in values if isinstance(v, str)):
                raise UnauthorizedError("invalid token: wrong audience")
            return
        # Cognito access tokens carry no aud; API Gateway then matches client_id against the audience.
        if claims.get("client_id") not in self.audience:
            raise UnauthorizedError("invalid token: wrong audience (no aud, and client_id is not an accepted client)")

    def check_scope(self, claims: Mapping[str, Any], scope: str | None) -> None:
        """Require ``scope`` in the token unless scopes are not enforced or the route has none.

        :raises ForbiddenError: the token lacks the scope (403).
        """
        if scope is None or not self.settings.enforce_scopes:
            return
        if scope not in token_scopes(claims):
            raise ForbiddenError(f"the token lacks the scope {scope}")

    def authorize(self, authorization: str | None, scope: str | None) -> dict[str, Any]:
        """Verify the bearer token of an ``Authorization`` header and check ``scope``; the claims."""
        claims = self.verify(bearer_token(authorization))
        self.check_scope(claims, scope)
        return claims
