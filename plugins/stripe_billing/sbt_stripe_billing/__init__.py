"""sbt provider ``stripe``: IBilling on Stripe (customers, subscriptions, Billing Meter events, webhooks).

Entry point: ``[project.entry-points.sbt] stripe = "sbt_stripe_billing:StripeBilling"``.
"""

from .provider import StripeBilling
from .settings import StripeBillingSettings

__all__ = ["StripeBilling", "StripeBillingSettings"]
