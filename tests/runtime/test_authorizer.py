"""The JWT authorizer on its own: every check docs/design.md section 4 lists, JWKS caching and refresh."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from sbt_core.errors import ForbiddenError, UnauthorizedError
from sbt_core.models import AuthSettings
from sbt_core.runtime.authorizer import Authorizer, RemoteJwks, StaticJwks, bearer_token, token_scopes

ISSUER = "https://issuer.test/pool"
AUDIENCE = "client-a"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key: Any, kid: str) -> dict[str, Any]:
    algo = RSAAlgorithm if isinstance(key, rsa.RSAPublicKey) else ECAlgorithm
    data = json.loads(algo.to_jwk(key))
    return {**data, "kid": kid, "use": "sig"}


JWKS = {"keys": [_jwk(RSA_KEY.public_key(), "rsa-1"), _jwk(EC_KEY.public_key(), "ec-1")]}


def settings(**changes: Any) -> AuthSettings:
    base: dict[str, Any] = dict(jwt_issuer=ISSUER, jwt_audience=[AUDIENCE, "machine-b"],
                                token_endpoint="https://issuer.test/oauth2/token",
                                well_known_endpoint_url=f"{ISSUER}/.well-known/openid-configuration",
                                user_client_id=AUDIENCE)
    return AuthSettings(**{**base, **changes})


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "u-1", "token_use": "access", "scope": "user/user_read",
            "iat": now, "nbf": now, "exp": now + 600}
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not None}


def token(key: Any = RSA_KEY, alg: str = "RS256", kid: str | None = "rsa-1", **changes: Any) -> str:
    headers = {"kid": kid} if kid else {}
    return jwt.encode(claims(**changes), key, algorithm=alg, headers=headers)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def authorizer(**changes: Any) -> Authorizer:
    return Authorizer(settings(**changes), StaticJwks(JWKS))


def test_a_valid_token_gives_its_claims() -> None:
    got = authorizer().verify(token())
    assert got["sub"] == "u-1"


def test_es256_is_accepted_too() -> None:
    assert authorizer().verify(token(EC_KEY, "ES256", kid="ec-1"))["sub"] == "u-1"


@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic dXNlcjpwdw==", "Bearer    "])
def test_a_missing_or_malformed_header_is_401(header: str | None) -> None:
    with pytest.raises(UnauthorizedError):
        bearer_token(header)


def _none_token() -> str:
    return jwt.encode(claims(), None, algorithm="none")


def _hs256_with_public_key() -> str:
    # The classic key-confusion forgery: HMAC keyed with the issuer's public key (which anyone can fetch).
    public_pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = _b64(json.dumps(claims()).encode())
    sig = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


def _tampered() -> str:
    head, body, sig = token().split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["scope"] = "user/user_read user/user_write"
    return f"{head}.{_b64(json.dumps(payload).encode())}.{sig}"


BAD_TOKENS = {
    "expired": (lambda: token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200,
                              nbf=int(time.time()) - 7200), "expired"),
    "not yet valid": (lambda: token(nbf=int(time.time()) + 3600), "not yet valid"),
    "wrong issuer": (lambda: token(iss="https://evil.test/pool"), "wrong issuer"),
    "wrong audience": (lambda: token(aud="someone-else"), "wrong audience"),
    "tampered": (_tampered, "bad signature"),
    "alg none": (_none_token, "algorithm 'none'"),
    "HS256 with the public key": (_hs256_with_public_key, "algorithm 'HS256'"),
    "signed by another key": (lambda: token(OTHER_RSA_KEY), "bad signature"),
    "unknown kid": (lambda: token(kid="rotated-away"), "unknown key"),
    "no exp": (lambda: token(exp=None), "exp"),
    "id token": (lambda: token(token_use="id"), "token_use"),
    "not a JWT": (lambda: "not.a.jwt", "not a JWT"),
    "RS256 header on an EC key": (lambda: _rs256_header_ec_kid(), "does not match"),
}


def _rs256_header_ec_kid() -> str:
    return token(kid="ec-1")


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_tokens_are_401_with_a_reason(case: str) -> None:
    make, reason = BAD_TOKENS[case]
    with pytest.raises(UnauthorizedError) as info:
        authorizer().verify(make())
    assert reason in info.value.message
    assert info.value.status == 401


def test_a_cognito_access_token_without_aud_is_checked_by_client_id() -> None:
    ok = token(aud=None, client_id="machine-b")
    assert authorizer().verify(ok)["client_id"] == "machine-b"
    with pytest.raises(UnauthorizedError, match="client_id"):
        authorizer().verify(token(aud=None, client_id="stranger"))
    with pytest.raises(UnauthorizedError):
        authorizer().verify(token(aud=None))


def test_token_use_is_not_checked_when_the_provider_sets_none() -> None:
    assert authorizer(token_use=None).verify(token(token_use=None))["sub"] == "u-1"
    with pytest.raises(UnauthorizedError, match="token_use"):
        authorizer().verify(token(token_use=None))


def test_symmetric_algorithms_in_settings_are_ignored() -> None:
    with pytest.raises(ValueError, match="no usable JWT algorithm"):
        Authorizer(settings(algorithms=["HS256", "none"]), StaticJwks(JWKS))
    only_rs = authorizer(algorithms=["RS256", "HS256"])
    with pytest.raises(UnauthorizedError, match="ES256"):
        only_rs.verify(token(EC_KEY, "ES256", kid="ec-1"))


def test_symmetric_keys_in_a_jwks_are_never_used() -> None:
    oct_jwks = {"keys": [{"kty": "oct", "kid": "k", "k": _b64(b"s" * 32), "alg": "HS256"}]}
    auth = Authorizer(settings(), StaticJwks(oct_jwks))
    with pytest.raises(UnauthorizedError):
        auth.verify(jwt.encode(claims(), b"s" * 32, algorithm="HS256", headers={"kid": "k"}))


def test_scopes_come_from_scope_or_scp() -> None:
    assert token_scopes({"scope": "a/b c/d"}) == {"a/b", "c/d"}
    assert token_scopes({"scp": ["a/b"], "scope": "c/d"}) == {"a/b", "c/d"}
    assert token_scopes({"scp": "x"}) == {"x"}
    assert token_scopes({}) == set()


def test_a_missing_scope_is_403_unless_scopes_are_not_enforced() -> None:
    auth = authorizer()
    granted = auth.verify(token(scope="user/user_read"))
    auth.check_scope(granted, "user/user_read")
    auth.check_scope(granted, None)
    with pytest.raises(ForbiddenError, match="user/user_write") as info:
        auth.check_scope(granted, "user/user_write")
    assert info.value.status == 403
    lax = authorizer(enforce_scopes=False)
    lax.check_scope(lax.verify(token(scope=None)), "user/user_write")  # SBT setAPIGWScopes: false


def test_authorize_combines_both() -> None:
    auth = authorizer()
    assert auth.authorize(f"Bearer {token()}", "user/user_read")["sub"] == "u-1"
    with pytest.raises(ForbiddenError):
        auth.authorize(f"bearer {token()}", "tenant/tenant_write")


# --- the remote JWKS --------------------------------------------------------------------------------------

class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _remote(responses: list[dict[str, Any] | int], clock: FakeClock) -> tuple[RemoteJwks, list[str]]:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        answer = responses[min(len(calls), len(responses)) - 1]
        if isinstance(answer, int):
            return httpx.Response(answer)
        return httpx.Response(200, json=answer)

    client = httpx.Client(transport=httpx.MockTransport(handler))
    return RemoteJwks("https://issuer.test/pool/.well-known/jwks.json", client=client, clock=clock,
                      ttl_seconds=600, min_refresh_seconds=30), calls


def test_the_remote_jwks_is_cached() -> None:
    clock = FakeClock()
    jwks, calls = _remote([JWKS], clock)
    auth = Authorizer(settings(), jwks)
    assert auth.needs_io(token())
    for _ in range(3):
        auth.verify(token())
    assert len(calls) == 1
    assert not auth.needs_io(token())
    clock.now += 601  # past the TTL
    auth.verify(token(sub="u-2"))  # a token not verified before
    assert len(calls) == 2


def test_an_unknown_kid_refetches_once_then_is_rate_limited() -> None:
    clock = FakeClock()
    rotated = {"keys": [*JWKS["keys"], _jwk(OTHER_RSA_KEY.public_key(), "rsa-2")]}
    jwks, calls = _remote([JWKS, rotated], clock)
    auth = Authorizer(settings(), jwks)
    auth.verify(token())
    new_token = token(OTHER_RSA_KEY, kid="rsa-2")
    with pytest.raises(UnauthorizedError, match="unknown key"):
        auth.verify(new_token)  # within min_refresh_seconds of the first fetch: no refetch
    assert len(calls) == 1
    clock.now += 31
    assert auth.verify(new_token)["sub"] == "u-1"  # keys rotated: refetched, found
    assert len(calls) == 2
    with pytest.raises(UnauthorizedError):
        auth.verify(token(kid="forged-kid"))
    with pytest.raises(UnauthorizedError):
        auth.verify(token(kid="forged-kid-2"))
    assert len(calls) == 2  # a flood of unknown kids does not hammer the issuer


def test_an_unreachable_jwks_is_401_without_details() -> None:
    jwks, calls = _remote([503], FakeClock())
    with pytest.raises(UnauthorizedError, match="signing keys are unavailable"):
        Authorizer(settings(), jwks).verify(token())
    assert calls


def test_verified_tokens_are_cached_but_still_expire() -> None:
    now = [time.time()]
    jwks, calls = _remote([JWKS], FakeClock())
    auth = Authorizer(settings(), jwks, clock=lambda: now[0], cache_seconds=7200)
    short = token(exp=int(now[0]) + 60)
    first = auth.verify(short)
    first["scope"] = "tampered/in_memory"  # callers get a copy: the cache cannot be changed through it
    assert auth.verify(short)["scope"] == "user/user_read"
    assert not auth.needs_io(short)
    now[0] += 3600  # long after exp: the cached entry must not outlive the token
    with pytest.raises(UnauthorizedError, match="expired"):
        auth.verify(short)
    early = token(nbf=int(now[0]) + 3600, exp=int(now[0]) + 7200)
    with pytest.raises(UnauthorizedError, match="not yet valid"):
        auth.verify(early)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", ["numeric-string", True, [1], {"n": 1}])
def test_registered_date_claims_must_be_numbers(claim: str, value: Any) -> None:
    # RFC 7519 section 4.1: exp, nbf and iat are NumericDates; PyJWT alone takes int("1700000000").
    given = str(int(time.time()) + 600) if value == "numeric-string" else value
    with pytest.raises(UnauthorizedError, match="invalid token"):
        authorizer().verify(token(**{claim: given}))


@pytest.mark.parametrize("raw", [b"NaN", b"Infinity", b"1e999"])
def test_a_non_finite_exp_is_401_not_a_crash(raw: bytes) -> None:
    # A payload JSON cannot carry but Python's json reads, signed with the trusted key.
    header = _b64(json.dumps({"alg": "RS256", "kid": "rsa-1", "typ": "JWT"}).encode())
    body = json.dumps(claims(exp=None)).encode()[:-1] + b', "exp": ' + raw + b"}"
    signing_input = f"{header}.{_b64(body)}".encode()
    signature = jwt.get_algorithm_by_name("RS256").sign(signing_input, RSA_KEY)
    with pytest.raises(UnauthorizedError, match="invalid token"):
        authorizer().verify(f"{header}.{_b64(body)}.{_b64(signature)}")


def test_the_cache_never_outlives_exp_even_when_its_ttl_is_longer() -> None:
    now = [time.time()]
    auth = Authorizer(settings(), StaticJwks(JWKS), clock=lambda: now[0], cache_seconds=300, leeway_seconds=0)
    short = token(exp=int(now[0]) + 10)
    assert auth.verify(short)["sub"] == "u-1"
    now[0] += 11
    with pytest.raises(UnauthorizedError, match="expired"):
        auth.verify(short)
