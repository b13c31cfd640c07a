"""The ``StripeClient`` the provider and its CLI share."""

from __future__ import annotations

from typing import Any

import stripe

from .settings import StripeBillingSettings

__all__ = ["make_client"]


def make_client(settings: StripeBillingSettings) -> stripe.StripeClient:
    """A ``StripeClient`` for the settings: key, ``api_base``, API version, timeout, and the SDK's own
    retries (``max_retries``; they honour ``Stripe-Should-Retry`` and back off) for every call but meter
    events, whose retries :mod:`._push` controls."""
    kwargs: dict[str, Any] = {"max_network_retries": settings.max_retries,
                              "http_client": stripe.RequestsClient(timeout=settings.timeout_seconds)}
    if settings.api_base:
        kwargs["base_addresses"] = {"api": settings.api_base.rstrip("/")}
    if settings.stripe_version:
        kwargs["stripe_version"] = settings.stripe_version
    return stripe.StripeClient(settings.api_key.get_secret_value(), **kwargs)
