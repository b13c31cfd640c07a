"""Getting an access token from the configured pool, for ``sbt cognito token`` (then ``SBT_TOKEN``).

Two ways, as SBT's own scripts and its EventBridge connection do:

- a user signs in with a password: Cognito ``InitiateAuth`` USER_PASSWORD_AUTH on the user client (what
  sbt-aws's ``sbt-aws.sh`` does with ``aws cognito-idp initiate-auth``). Such tokens carry no API scopes.
- the machine client: OAuth 2 ``client_credentials`` at the token endpoint, client id and secret in HTTP
  Basic auth (what SBT's EventBridge connection does); the token carries the requested scopes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from sbt_core.errors import BadRequestError, ProviderError, UnauthorizedError

from ._errors import error_code, translate
from .settings import CognitoSettings

__all__ = ["client_credentials_token", "password_token"]

#: InitiateAuth codes that mean "these credentials do not sign in" (wrong password, unknown/disabled user).
_REFUSED = frozenset({"NotAuthorizedException", "UserNotFoundException", "UserNotConfirmedException",
                      "PasswordResetRequiredException"})


def password_token(client: Any, settings: CognitoSettings, user_name: str, password: str) -> str:
    """The access token of ``user_name`` signed in with ``password`` on the user client.

    :raises UnauthorizedError: wrong password, unknown or disabled user (Cognito's NotAuthorizedException).
    :raises BadRequestError: Cognito asks for a challenge first (e.g. NEW_PASSWORD_REQUIRED after an
        invitation): this command does not answer challenges.
    :raises ProviderError: Cognito failed otherwise.
    """
    try:
        response: dict[str, Any] = client.initiate_auth(
            ClientId=settings.user_client_id, AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": user_name, "PASSWORD": password})
    except (ClientError, BotoCoreError) as exc:
        if error_code(exc) in _REFUSED:
            message = str(exc.response.get("Error", {}).get("Message") or "")
            raise UnauthorizedError(f"sign-in refused ({error_code(exc)}): {message}"[:300]) from None
        raise translate(exc, "InitiateAuth", user_name=user_name) from exc
    result = response.get("AuthenticationResult")
    if not result:
        challenge = response.get("ChallengeName", "an unknown challenge")
        raise BadRequestError(f"Cognito asks for {challenge} before issuing a token; complete it first (e.g. set a "
                              "permanent password with 'aws cognito-idp admin-set-user-password --permanent')")
    return str(result["AccessToken"])


def client_credentials_token(settings: CognitoSettings, scopes: Sequence[str] = (), *,
                             http: httpx.Client | None = None) -> str:
    """An access token of the machine client from the token endpoint (OAuth 2 client_credentials).

    :param scopes: scopes to request (none: every scope the client is allowed).
    :param http: the HTTP client (tests inject a transport).
    :raises BadRequestError: the config has no machine client.
    :raises UnauthorizedError: the token endpoint refused (its OAuth ``error`` code is in the message).
    :raises ProviderError: the token endpoint is unreachable or answered something else.
    """
    if settings.machine_client_id is None or settings.machine_client_secret is None:
        raise BadRequestError("the config has no machine_client_id / machine_client_secret")
    url = settings.resolved_token_endpoint
    form = {"grant_type": "client_credentials"}
    if scopes:
        form["scope"] = " ".join(scopes)
    if settings.machine_client_audience:
        form["audience"] = settings.machine_client_audience
    owned = http is None
    http = http or httpx.Client(timeout=10, follow_redirects=False)
    try:
        response = http.post(url, data=form,
                             auth=(settings.machine_client_id, settings.machine_client_secret.get_secret_value()))
    except httpx.HTTPError as exc:
        raise ProviderError(f"token endpoint {url} unreachable ({type(exc).__name__})") from None
    finally:
        if owned:
            http.close()
    body = _json(response)
    if response.status_code in (400, 401) and isinstance(body.get("error"), str):
        # Only the OAuth error code: never echo the request (it carried the secret).
        raise UnauthorizedError(f"token endpoint refused the machine client: {body['error']}")
    if response.status_code != 200 or not isinstance(body.get("access_token"), str):
        raise ProviderError(f"token endpoint {url} answered {response.status_code} without an access token")
    return str(body["access_token"])


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
