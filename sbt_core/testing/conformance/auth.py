"""IAuth's contract as tests: :class:`TestAuthConformance`.

User shapes and errors are sbt-aws's (camelCase ``userName``, ``email``, ``userRole``; 404 for an unknown
user, 409 for a taken name). The HTTP checks need a token the control plane accepts: with the ``local``
provider the harness mints one; any other provider's routes are checked through its hooks.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from ...errors import BadRequestError, ConflictError, NotFoundError
from ...models import AuthSettings, CreateUserRequest, UpdateUserRequest, User, to_json
from ...plugins import AuthFacade
from ..harness import Harness
from ._kit import ConformanceTarget, Planes, gate, promise

__all__ = ["TestAuthConformance"]


def _name() -> str:
    return f"conf-{uuid.uuid4().hex[:10]}"


class TestAuthConformance:
    """IAuth as DESIGN.md section 2 promises it. Needs the fixture ``sbt_conformance_auth`` (a
    :class:`~._kit.ConformanceTarget`); ``pytest --sbt-conformance auth=<type>`` provides it."""

    sbt_interface = "auth"

    @pytest.fixture(autouse=True)
    def _gate(self, sbt_conformance_auth: ConformanceTarget, request: pytest.FixtureRequest) -> None:
        gate(sbt_conformance_auth, request)

    @pytest.fixture
    def auth_plane(self, sbt_conformance_auth: ConformanceTarget, sbt_conformance_planes: Planes) -> Harness:
        return sbt_conformance_planes.get(sbt_conformance_auth)

    @pytest.fixture
    def hooks(self, auth_plane: Harness) -> AuthFacade:
        facade: AuthFacade | None = auth_plane.providers.auth
        assert facade is not None
        return facade

    def _user(self, hooks: AuthFacade, role: str = "basicUser") -> User:
        name = _name()
        user = hooks.create_user(CreateUserRequest(user_name=name, user_role=role, email=f"{name}@example.com"))
        assert isinstance(user, User) and user.user_name == name, f"auth_create_user answered {user!r}"
        return user

    @promise("auth_settings")
    def test_settings_name_issuer_audience_and_keys(self, hooks: AuthFacade, auth_plane: Harness) -> None:
        """auth_settings gives an issuer, an audience, token and well-known endpoints, and JWKS that answer."""
        settings = hooks.settings()
        assert isinstance(settings, AuthSettings)
        assert settings.jwt_issuer.startswith(("http://", "https://")), settings.jwt_issuer
        assert settings.jwt_audience and all(settings.jwt_audience), "jwtAudience is empty"
        assert settings.token_endpoint and settings.well_known_endpoint_url and settings.user_client_id
        url = settings.resolved_jwks_url
        try:
            answer: Any = httpx.get(url, timeout=10)
        except httpx.ConnectError:  # the control plane's own address (local auth): ask the app in-process
            answer = auth_plane.client(authenticated=False).get(httpx.URL(url).path)
        assert answer.status_code == 200, f"JWKS at {url} answered {answer.status_code}"
        keys = answer.json().get("keys")
        assert isinstance(keys, list) and keys and all("kid" in k and "kty" in k for k in keys), (
            f"JWKS at {url} holds no keys with kid and kty")

    @promise("auth_create_user", "auth_fetch_user", "auth_update_user", "auth_delete_user")
    def test_user_crud_keeps_sbt_aws_shapes(self, hooks: AuthFacade) -> None:
        """Users are created, fetched, updated (role or email alone) and deleted with sbt-aws's camelCase shapes."""
        user = self._user(hooks)
        fetched = hooks.fetch_user(user.user_name)
        assert (fetched.user_name, fetched.email, fetched.user_role) == (user.user_name, user.email, "basicUser")
        assert {"userName", "email", "userRole", "enabled"} <= set(to_json(fetched)), to_json(fetched)
        hooks.update_user(user.user_name, UpdateUserRequest(user_role="admin"))
        assert hooks.fetch_user(user.user_name).user_role == "admin"
        hooks.update_user(user.user_name, UpdateUserRequest(email=f"new-{user.user_name}@example.com"))
        fetched = hooks.fetch_user(user.user_name)
        assert (fetched.user_role, fetched.email) == ("admin", f"new-{user.user_name}@example.com")
        hooks.delete_user(user.user_name)
        with pytest.raises(NotFoundError):
            hooks.fetch_user(user.user_name)

    @promise("auth_create_user", "auth_fetch_user", "auth_update_user", "auth_delete_user", "auth_disable_user",
             "auth_enable_user")
    def test_unknown_users_are_404_and_taken_names_409(self, hooks: AuthFacade) -> None:
        """An unknown user is 404 for fetch, update, delete, disable and enable; a taken userName is 409."""
        missing = _name()
        calls: list[Callable[[], object]] = [lambda: hooks.fetch_user(missing), lambda: hooks.delete_user(missing),
                 lambda: hooks.update_user(missing, UpdateUserRequest(user_role="admin")),
                 lambda: hooks.disable_user(missing), lambda: hooks.enable_user(missing)]
        for call in calls:
            with pytest.raises(NotFoundError):
                call()
        user = self._user(hooks)
        with pytest.raises(ConflictError):
            hooks.create_user(CreateUserRequest(user_name=user.user_name, user_role="x", email="x@example.com"))
        hooks.delete_user(user.user_name)

    @promise("auth_create_user", "auth_disable_user", "auth_enable_user", "auth_fetch_user")
    def test_disable_and_enable(self, hooks: AuthFacade) -> None:
        """A disabled user is fetched with enabled false, and true again once enabled (each twice is fine)."""
        user = self._user(hooks)
        hooks.disable_user(user.user_name)
        hooks.disable_user(user.user_name)
        assert hooks.fetch_user(user.user_name).enabled is False, "a disabled user is still enabled"
        hooks.enable_user(user.user_name)
        hooks.enable_user(user.user_name)
        assert hooks.fetch_user(user.user_name).enabled is True, "an enabled user is still disabled"
        hooks.delete_user(user.user_name)

    @promise("auth_create_user", "auth_fetch_all_users")
    def test_user_pages_list_every_user_once(self, hooks: AuthFacade) -> None:
        """GET /users pages (limit, next_token) list every user exactly once; a bad token is 400."""
        made = {self._user(hooks).user_name for _ in range(5)}
        seen: list[str] = []
        token: str | None = None
        for _ in range(1000):
            page = hooks.fetch_all_users(limit=2, next_token=token)
            assert len(page.items) <= 2, f"a page of {len(page.items)} users exceeds limit=2"
            seen += [u.user_name for u in page.items]
            token = page.next_token
            if token is None:
                break
        assert len(seen) == len(set(seen)), "a user appeared on two pages"
        assert made <= set(seen), f"pages lost users: {sorted(made - set(seen))}"
        with pytest.raises(BadRequestError):
            hooks.fetch_all_users(limit=2, next_token="not-a-token")

    @promise("auth_create_user", "auth_fetch_user", "auth_fetch_all_users", "auth_update_user", "auth_delete_user",
             "auth_disable_user", "auth_enable_user")
    def test_user_routes_answer_sbt_aws_bodies(self, auth_plane: Harness,
                                               sbt_conformance_auth: ConformanceTarget) -> None:
        """The /users routes answer sbt-aws's bodies: 201 {"data": {"userName"}}, {"data": ...}, {"message": ...}."""
        if sbt_conformance_auth.token is not None:
            client = auth_plane.client(token=sbt_conformance_auth.token(auth_plane))
        else:
            try:
                client = auth_plane.client()
            except RuntimeError:  # tokens come from the provider under test; the harness mints only local's
                pytest.skip("no token for this provider's routes: give ConformanceTarget(token=...)")
        name = _name()
        body = {"userName": name, "userRole": "basicUser", "email": f"{name}@example.com"}
        created = client.post("/users", json=body)
        assert created.status_code == 201 and created.json() == {"data": {"userName": name}}, created.text
        assert client.post("/users", json=body).status_code == 409
        fetched = client.get(f"/users/{name}")
        assert fetched.status_code == 200 and fetched.json()["data"]["userName"] == name, fetched.text
        for action, message in (("disable", "User disabled"), ("enable", "User enabled")):
            answer = client.put(f"/users/{name}/{action}")
            assert answer.status_code == 200 and answer.json() == {"message": message}, answer.text
        updated = client.put(f"/users/{name}", json={"userRole": "admin"})
        assert updated.status_code == 200 and updated.json() == {"message": "User updated"}, updated.text
        listed = client.get("/users", params={"limit": 1})
        assert listed.status_code == 200 and len(listed.json()["data"]) == 1, listed.text
        assert client.delete(f"/users/{name}").json() == {"message": "User deleted"}
        missing = client.get(f"/users/{name}")
        assert missing.status_code == 404 and "message" in missing.json()
