"""The boto3 ``cognito-idp`` client the provider, its CLI and the bootstrap share."""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

__all__ = ["make_client"]

_session: boto3.session.Session | None = None
_session_lock = threading.Lock()


def make_client(region: str, endpoint_url: str | None = None, **client_kwargs: Any) -> Any:
    """A ``cognito-idp`` boto3 client with bounded timeouts and botocore retries off (tenacity retries).

    Credentials come from boto3's default chain (environment, profile, instance role).
    """
    global _session
    config = BotoConfig(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=15)
    # One session for the process: it caches the service model, so later clients take ms, not 50+ ms.
    # Creating clients from a shared session is not thread-safe, hence the lock; the clients themselves are.
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("cognito-idp", region_name=region, endpoint_url=endpoint_url, config=config,
                               **client_kwargs)
