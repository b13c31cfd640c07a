"""The built-in ``local`` auth provider: key and users under the state directory, tokens, the OAuth token
endpoint and ``sbt token``."""

from __future__ import annotations

import base64
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import jwt
import pytest
from typer.testing import CliRunner

from sbt_core import ConfigError, ForbiddenError, NotFoundError, Provider, hookimpl
from sbt_core.auth_local import DEFAULT_ISSUER, LocalAuth, LocalAuthSettings, mint_token
from sbt_core.auth_local.keys import KEY_FILE, load_or_create_key
from sbt_core.auth_local.store import DB_FILE
from sbt_core.bindings import build_binding_table
from sbt_core.cli import CliState
from sbt_core.cli import build_app as build_cli
from sbt_core.config import load_config
from sbt_core.errors import UnauthorizedError
from sbt_core.models import AdminUser, AuthSettings, CreateUserRequest, scopes
from sbt_core.plugins import build_providers, discover
from sbt_core.provider import ProviderContext
from sbt_core.runtime.authorizer import Authorizer, StaticJwks
from sbt_core.runtime.bus import Bus
from sbt_core.runtime.http import build_app

SECRET = "s3cret-value-never-printed"


def provider(state_dir: Path, **settings: Any) -> LocalAuth:
    return LocalAuth(LocalAuthSettings(**settings), ProviderContext("local", "auth", state_dir))


def authorizer_of(p: LocalAuth) -> Authorizer:
    return Authorizer(p.auth_settings(), StaticJwks(p.jwks))


def test_the_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    first = provider(tmp_path)
    key_file = tmp_path / "local" / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "local" / DB_FILE).stat().st_mode) == 0o600
    again = provider(tmp_path)
    assert again.key.kid == first.key.kid
    (jwk,) = first.jwks()["keys"]
    assert jwk["alg"] == "RS256" and jwk["kid"] == first.key.kid and not {"d", "p", "q"} & set(jwk)
    assert "PRIVATE" not in repr(first.key)


def test_concurrent_starts_agree_on_one_key(tmp_path: Path) -> None:
    kids: list[str] = []
    threads = [threading.Thread(target=lambda: kids.append(load_or_create_key(tmp_path).kid)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kids) == 4 and len(set(kids)) == 1
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left behind


def test_the_admin_is_created_once(tmp_path: Path) -> None:
    p = provider(tmp_path)
    admin = p.auth_create_admin_user(AdminUser(name="root", email="root@example.com", role="SystemAdmin"))
    assert admin is not None and admin.user_role == "SystemAdmin"
    again = p.auth_create_admin_user(AdminUser(name="root", email="other@example.com", role="Other"))
    assert again == admin  # an existing admin is left alone, as Cognito's custom resource does
    assert [u.user_name for u in p.auth_fetch_all_users(10, None).items] == ["root"]


def test_settings_describe_the_provider(tmp_path: Path) -> None:
    settings: AuthSettings = provider(tmp_path).auth_settings()
    assert settings.jwt_issuer == DEFAULT_ISSUER == "http://127.0.0.1:8080"
    assert settings.jwt_audience == ["sbt"]
    assert settings.resolved_jwks_url == "http://127.0.0.1:8080/.well-known/jwks.json"
    assert settings.token_endpoint == "http://127.0.0.1:8080/oauth2/token"
    assert settings.algorithms == ["RS256"] and settings.token_use == "access"


def test_a_token_minted_in_another_process_verifies(tmp_path: Path) -> None:
    server = provider(tmp_path)
    token = mint_token([scopes.USER_READ], state_dir=tmp_path)  # builds its own provider, as `sbt token` does
    claims = authorizer_of(server).authorize(f"Bearer {token}", scopes.USER_READ)
    assert claims["client_id"] == "sbt-local" and claims["token_use"] == "access"
    assert claims["exp"] - claims["iat"] == 3600


def test_tokens_of_users(tmp_path: Path) -> None:
    p = provider(tmp_path)
    p.auth_create_user(CreateUserRequest(user_name="dana", user_role="r", email="dana@example.com"))
    claims = authorizer_of(p).verify(p.mint_token([scopes.USER_READ], user="dana"))
    assert claims["sub"] == "dana" and claims["username"] == "dana"
    with pytest.raises(NotFoundError, match="ghost"):
        p.mint_token(user="ghost")
    p.auth_disable_user("dana")
    with pytest.raises(ForbiddenError):
        p.mint_token(user="dana")


def test_another_issuer_or_state_dir_is_not_trusted(tmp_path: Path) -> None:
    server = provider(tmp_path / "a")
    with pytest.raises(UnauthorizedError, match="unknown key|bad signature"):
        authorizer_of(server).verify(provider(tmp_path / "b").mint_token())
    with pytest.raises(UnauthorizedError, match="issuer"):
        authorizer_of(server).verify(provider(tmp_path / "a", issuer="http://other:9000").mint_token())


class OtherAuth(Provider):
    @hookimpl
    def auth_settings(self):  # type: ignore[no-untyped-def]
        return None


def _catalog() -> Any:
    return discover(entry_points=False, builtins=True, extra={"otherauth": OtherAuth})


def test_settings_from_config_with_machine_clients(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_SECRET", SECRET)
    raw = {"providers": {"auth": {"type": "local", "issuer": "http://sbt.internal:9000", "machine_clients": [
        {"client_id": "job", "client_secret": {"env": "JOB_SECRET"}, "scopes": [scopes.EVENT_WRITE]}]}}}
    settings = load_config(_catalog(), raw=raw).providers["auth"].settings
    assert isinstance(settings, LocalAuthSettings)
    client = settings.client("job")
    assert client is not None and client.client_secret.get_secret_value() == SECRET
    assert SECRET not in repr(settings)
    dupes = {"providers": {"auth": {"type": "local", "machine_clients": [
        {"client_id": "a", "client_secret": "x"}, {"client_id": "a", "client_secret": "y"}]}}}
    with pytest.raises(ConfigError, match="more than once"):
        load_config(_catalog(), raw=dupes)
    with pytest.raises(ConfigError, match="token_lifetime_seconds"):
        load_config(_catalog(), raw={"providers": {"auth": {"type": "local", "token_lifetime_seconds": 5}}})
    with pytest.raises(ConfigError, match="client_secret"):
        load_config(_catalog(), raw={"providers": {"auth": {"type": "local", "machine_clients": [{"client_id": "a"}]}}})


def test_mint_token_refuses_another_auth_provider(tmp_path: Path) -> None:
    config = load_config(_catalog(), raw={"providers": {"auth": {"type": "otherauth"}}})
    with pytest.raises(ConfigError, match="otherauth"):
        mint_token(config=config)


# --- over HTTP ---------------------------------------------------------------------------------------------

@attrs.define
class Plane:
    providers: Any
    bindings: Any
    bus: Any
    config: Any
    auth_settings: Any


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setenv("JOB_SECRET", SECRET)
    client = {"client_id": "job", "client_secret": {"env": "JOB_SECRET"},
              "scopes": [scopes.EVENT_WRITE, scopes.EVENT_READ]}
    raw = {"state_dir": str(tmp_path), "providers": {"auth": {"type": "local", "machine_clients": [client]}}}
    catalog = _catalog()
    config = load_config(catalog, raw=raw)
    providers = build_providers(catalog, config)
    bus = Bus(config.events)
    plane = Plane(providers, build_binding_table(catalog, config), bus, config, providers.auth.settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(plane)), base_url="http://sbt.test") as c:
        yield c
    bus.stop(1)
    providers.shutdown()


def _basic(client_id: str, secret: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@pytest.mark.anyio
async def test_client_credentials_give_a_token_that_works(http: httpx.AsyncClient) -> None:
    response = await http.post("/oauth2/token", data={"grant_type": "client_credentials"},
                               headers=_basic("job", SECRET))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert response.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert claims["client_id"] == "job" and claims["sub"] == "job"
    assert set(claims["scope"].split()) == {scopes.EVENT_WRITE, scopes.EVENT_READ}
    token = {"authorization": f"Bearer {body['access_token']}"}
    put = await http.post("/events", json=[{"detail-type": "custom", "source": "app", "detail": {}}], headers=token)
    assert put.json()["FailedEntryCount"] == 0
    assert (await http.get("/users", headers=token)).status_code == 403  # not granted to this client

    posted = await http.post("/oauth2/token", data={"grant_type": "client_credentials", "client_id": "job",
                                                    "client_secret": SECRET, "scope": scopes.EVENT_READ})
    assert jwt.decode(posted.json()["access_token"], options={"verify_signature": False})["scope"] == scopes.EVENT_READ


@pytest.mark.anyio
@pytest.mark.parametrize(("data", "headers", "status", "error"), [
    ({"grant_type": "client_credentials"}, _basic("job", "wrong"), 401, "invalid_client"),
    ({"grant_type": "client_credentials"}, _basic("nobody", SECRET), 401, "invalid_client"),
    ({"grant_type": "client_credentials", "client_id": "job"}, {}, 401, "invalid_client"),
    ({"grant_type": "password", "username": "a", "password": "b"}, _basic("job", SECRET), 400,
     "unsupported_grant_type"),
    ({"grant_type": "client_credentials", "scope": scopes.USER_WRITE}, _basic("job", SECRET), 400, "invalid_scope"),
])
async def test_token_endpoint_errors(http: httpx.AsyncClient, data: dict[str, str], headers: dict[str, str],
                                     status: int, error: str) -> None:
    response = await http.post("/oauth2/token", data=data, headers=headers)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert SECRET not in response.text


@pytest.mark.anyio
async def test_discovery_documents(http: httpx.AsyncClient) -> None:
    discovery = (await http.get("/.well-known/openid-configuration")).json()
    assert discovery["issuer"] == DEFAULT_ISSUER
    assert discovery["jwks_uri"] == f"{DEFAULT_ISSUER}/.well-known/jwks.json"
    assert discovery["token_endpoint"] == f"{DEFAULT_ISSUER}/oauth2/token"
    assert (await http.get("/.well-known/jwks.json")).json()["keys"][0]["kty"] == "RSA"


# --- sbt token ---------------------------------------------------------------------------------------------

def _write_config(tmp_path: Path, auth_type: str = "local") -> Path:
    path = tmp_path / "sbt.toml"
    path.write_text(f'state_dir = "state"\n[providers.auth]\ntype = "{auth_type}"\n'
                    '[[providers.auth.machine_clients]]\nclient_id = "job"\nclient_secret = { env = "JOB_SECRET" }\n')
    return path


def _run(*args: str) -> Any:
    cli = build_cli(CliState(extra={"otherauth": OtherAuth}, entry_points=False))
    return CliRunner().invoke(cli, list(args))


def test_sbt_token_prints_only_a_token_the_server_accepts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_SECRET", SECRET)
    config = _write_config(tmp_path)
    result = _run("token", "--scope", "user/user_read tenant/tenant_read", "-s", scopes.EVENT_WRITE,
                  "--config", str(config))
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert "\n" not in token and SECRET not in result.output
    server = provider(tmp_path / "state")  # the state dir is relative to the config file
    claims = authorizer_of(server).verify(token)
    assert claims["scope"].split() == [scopes.USER_READ, scopes.TENANT_READ, scopes.EVENT_WRITE]
    every = _run("token", "--config", str(config))
    assert set(authorizer_of(server).verify(every.stdout.strip())["scope"].split()) == set(scopes.ALL)


def test_sbt_token_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_SECRET", SECRET)
    unknown = _run("token", "--user", "ghost", "--config", str(_write_config(tmp_path)))
    assert unknown.exit_code == 1
    assert unknown.output.strip() == "error: User ghost not found."
    other = tmp_path / "other.toml"
    other.write_text('[providers.auth]\ntype = "otherauth"\n')
    result = _run("token", "--config", str(other))
    assert result.exit_code == 1 and "local auth provider" in result.output and "otherauth" in result.output
