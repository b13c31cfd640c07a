"""The local auth provider's keys from config: every process given the same key verifies every other's
tokens (each with its own state directory), and a rotated-out key keeps verifying what it signed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sbt_core.auth_local import LocalAuth, LocalAuthSettings
from sbt_core.errors import StartupError, UnauthorizedError
from sbt_core.models import Secret
from sbt_core.provider import ProviderContext
from sbt_core.runtime.authorizer import Authorizer, StaticJwks
from sbt_core.testing import Harness

Factory = Callable[..., Harness]


def pem(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def old_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def local(state_dir: Path, **settings: object) -> LocalAuth:
    return LocalAuth(LocalAuthSettings(**settings), ProviderContext("local", "auth", state_dir))  # type: ignore[arg-type]


def test_processes_with_one_configured_key_accept_each_others_tokens(sbt_control_plane: Factory, tmp_path: Path,
                                                                     new_key: rsa.RSAPrivateKey) -> None:
    key_file = tmp_path / "signing-key.pem"
    key_file.write_text(pem(new_key))
    auth = {"type": "local", "signing_key": {"file": str(key_file)}}
    a = sbt_control_plane(config={"providers": {"auth": auth}}, state_dir=tmp_path / "host-a")
    b = sbt_control_plane(config={"providers": {"auth": auth}}, state_dir=tmp_path / "host-b")

    token = a.token("user/user_read")
    assert b.client(token=token).get("/users").status_code == 200
    assert a.client(token=b.token("user/user_read")).get("/users").status_code == 200
    assert not (tmp_path / "host-a" / "local" / "jwt-signing-key.pem").exists()  # nothing generated


def test_per_directory_keys_do_not_verify_each_other(sbt_control_plane: Factory, tmp_path: Path) -> None:
    a = sbt_control_plane(state_dir=tmp_path / "host-a")
    b = sbt_control_plane(state_dir=tmp_path / "host-b")
    assert b.client(token=a.token("user/user_read")).get("/users").status_code == 401


def test_a_rotated_out_key_still_verifies_and_is_published(tmp_path: Path, old_key: rsa.RSAPrivateKey,
                                                           new_key: rsa.RSAPrivateKey) -> None:
    before = local(tmp_path / "a", signing_key=Secret(pem(old_key)))
    old_token = before.mint_token(["user/user_read"])
    after = local(tmp_path / "b", signing_key=Secret(pem(new_key)),
                  previous_signing_keys=(Secret(public_pem(old_key)),))

    kids = [k["kid"] for k in after.jwks()["keys"]]
    assert kids == [after.key.kid, before.key.kid]
    verifier = Authorizer(after.auth_settings(), StaticJwks(after.jwks))
    assert verifier.verify(old_token)["scope"] == "user/user_read"
    assert jwt.get_unverified_header(after.mint_token())["kid"] == after.key.kid  # the new key signs

    dropped = local(tmp_path / "c", signing_key=Secret(pem(new_key)))  # rotation finished
    with pytest.raises(UnauthorizedError):
        Authorizer(dropped.auth_settings(), StaticJwks(dropped.jwks)).verify(old_token)


@pytest.mark.parametrize("setting", ["signing_key", "previous_signing_keys"])
def test_a_key_that_is_not_an_rsa_pem_stops_start_up_naming_the_setting(tmp_path: Path, setting: str) -> None:
    bad = Secret("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----")
    value = (bad,) if setting == "previous_signing_keys" else bad
    with pytest.raises(StartupError, match=f"providers.auth.{setting}") as caught:
        local(tmp_path, **{setting: value})
    assert "not a key" not in str(caught.value)


def test_the_signing_key_must_be_private(tmp_path: Path, new_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(StartupError, match="expected a private key"):
        local(tmp_path, signing_key=Secret(public_pem(new_key)))
