"""Cognito (botocore) errors -> sbt errors, and the throttling retry around every call.

sbt-aws's user Lambda let most Cognito errors become a 500 ("Failed to create user") and answered 200 when
deleting a missing user. Here:

- ``UserNotFoundException`` -> :class:`NotFoundError` (404, ``User <id> not found.`` as sbt-aws's GET says)
- ``UsernameExistsException``, ``AliasExistsException`` -> :class:`ConflictError` (409)
- throttling (``TooManyRequestsException``, ``ThrottlingException``...) -> retried with exponential backoff
  and jitter (tenacity); still throttled after the last attempt -> :class:`ProviderError`
- anything else -> :class:`ProviderError` (502) naming the operation and the AWS error code.

Messages carry the AWS error code and Cognito's own message, never a credential: no call made here sends
the machine client secret, and botocore's messages do not echo request signatures.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from sbt_core.errors import BadRequestError, ConflictError, NotFoundError, ProviderError, SbtError

__all__ = ["THROTTLING_CODES", "UserExistsError", "call_cognito", "error_code", "translate"]

log = logging.getLogger("sbt.provider.cognito")

T = TypeVar("T")

#: Error codes Cognito and the AWS SDKs use for throttling (Cognito's own plus botocore's standard list).
#: Not Cognito's LimitExceededException: that is a quota (too many clients, domains...), retrying cannot help.
THROTTLING_CODES = frozenset({
    "TooManyRequestsException", "ThrottlingException", "Throttling", "ThrottledException",
    "RequestThrottledException", "RequestLimitExceeded", "SlowDown",
})
_MAX_AWS_MESSAGE = 200


class UserExistsError(ConflictError):
    """409 for ``UsernameExistsException`` in particular (the admin user treats it as success, while an
    ``AliasExistsException``, another user holding the email, stays an error)."""


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore ClientError, else None."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "") or None
    return None


def _is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES


def translate(exc: BaseException, operation: str, *, user_name: str | None = None,
              bad_request_codes: frozenset[str] = frozenset()) -> SbtError:
    """The sbt error for a failed Cognito ``operation`` (``AdminGetUser``...).

    :param user_name: the user the call was about, for the 404/409 messages.
    :param bad_request_codes: codes that mean the caller's input was wrong for this operation (400), e.g.
        an invalid ``PaginationToken`` for ListUsers.
    """
    if isinstance(exc, SbtError):
        return exc
    code = error_code(exc)
    if code == "UserNotFoundException":
        return NotFoundError(f"User {user_name} not found.")
    if code == "UsernameExistsException":
        return UserExistsError(f"User {user_name} already exists ({code}).")
    if code == "AliasExistsException":
        return ConflictError(f"A user with that email already exists ({code}).")
    if isinstance(exc, ClientError):
        aws_message = str(exc.response.get("Error", {}).get("Message") or "")[:_MAX_AWS_MESSAGE]
        if code in bad_request_codes:
            return BadRequestError(f"{operation} refused the request ({code}): {aws_message}".rstrip(": "))
        suffix = " after retries" if code in THROTTLING_CODES else ""
        return ProviderError(f"Cognito {operation} failed{suffix} ({code}): {aws_message}".rstrip(": "))
    if isinstance(exc, NoCredentialsError):
        return ProviderError(f"Cognito {operation} failed: no AWS credentials found (NoCredentialsError)")
    if isinstance(exc, BotoCoreError):
        # e.g. EndpointConnectionError, ReadTimeoutError: the class name says which, the text names the URL.
        return ProviderError(f"Cognito {operation} failed ({type(exc).__name__}): {exc}"[:300])
    return ProviderError(f"Cognito {operation} failed ({type(exc).__name__})")


def call_cognito(fn: Callable[..., T], operation: str, *, max_attempts: int, initial_wait: float,
                 max_wait: float, user_name: str | None = None,
                 bad_request_codes: frozenset[str] = frozenset(), **kwargs: Any) -> T:
    """``fn(**kwargs)``, retrying throttling with backoff; any failure raised as an sbt error.

    botocore's own retries are switched off by the provider (``max_attempts=1``) so that this is the one
    retry layer and its bound is the configured one.

    :raises NotFoundError | ConflictError | BadRequestError | ProviderError: see :func:`translate`.
    """
    retrying = Retrying(
        retry=retry_if_exception(_is_throttling),
        stop=stop_after_attempt(max_attempts),
        # Exponential backoff plus up to one initial step of jitter (spelled this way for tenacity 8 and 9).
        wait=wait_exponential(multiplier=initial_wait, max=max_wait) + wait_random(0, initial_wait),
        reraise=True,
        before_sleep=lambda state: log.warning("Cognito %s throttled (attempt %d); retrying", operation,
                                               state.attempt_number),
    )
    try:
        return retrying(fn, **kwargs)
    except (ClientError, BotoCoreError) as exc:
        raise translate(exc, operation, user_name=user_name, bad_request_codes=bad_request_codes) from exc
