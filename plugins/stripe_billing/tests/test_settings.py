"""``[providers.billing]`` tables validated through sbt's own config loader."""

from __future__ import annotations

import pytest
from sbt_stripe_billing import StripeBilling, StripeBillingSettings

from sbt_core.config import load_config, redacted
from sbt_core.errors import ConfigError
from sbt_core.plugins import discover


@pytest.fixture
def catalog():
    return discover(entry_points=False, builtins=True, extra={"stripe": StripeBilling})


def billing_table(**settings):
    return {"providers": {"billing": {"type": "stripe", **settings}}}


def test_secrets_come_from_references_and_are_never_shown(catalog, monkeypatch):
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_from_env")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_from_env")
    config = load_config(catalog, raw=billing_table(api_key={"env": "STRIPE_API_KEY"},
                                                    webhook_secret={"env": "STRIPE_WEBHOOK_SECRET"},
                                                    meter_event_names={"productsSold": "products_sold"}))
    settings = config.providers["billing"].settings

    assert isinstance(settings, StripeBillingSettings)
    assert settings.api_key.get_secret_value() == "sk_test_from_env"
    assert settings.meter_event_name("productsSold") == "products_sold"
    assert settings.meter_event_name("apiCalls") == "apiCalls"
    assert "sk_test_from_env" not in repr(settings) and "whsec_from_env" not in repr(settings)
    assert "sk_test_from_env" not in str(redacted(dict(config.raw)))


def test_defaults_mirror_stripe_and_sbt_aws(catalog):
    settings = load_config(catalog, raw=billing_table(api_key="sk_test_x")).providers["billing"].settings

    assert (settings.prices_key, settings.item_kind, settings.customer_id_key, settings.value_key) == (
        "prices", "price", "stripe_customer_id", "value")
    assert settings.timestamp_horizon_days == 35 and settings.delete_customer_on_offboarding is True
    assert settings.webhook_path == "stripe" and settings.api_base is None


@pytest.mark.parametrize("settings, where", [
    ({"item_kind": "sku"}, "item_kind"),
    ({"customer_lookup": "scan"}, "customer_lookup"),
    ({"timestamp_horizon_days": 40}, "timestamp_horizon_days"),
    ({"meter_event_names": {"a": 1}}, "meter_event_names"),
    ({"api_kee": "sk_test_x"}, "api_kee"),
    ({"collection_method": "send_invoice"}, "days_until_due"),
    ({"payment_behavior": "sometimes"}, "payment_behavior"),
])
def test_bad_settings_name_their_key(catalog, settings, where):
    with pytest.raises(ConfigError) as info:
        load_config(catalog, raw=billing_table(**{"api_key": "sk_test_secret", **settings}))
    assert where in str(info.value)
    assert "sk_test_secret" not in str(info.value)


def test_missing_api_key_is_a_config_error(catalog):
    with pytest.raises(ConfigError, match="api_key"):
        load_config(catalog, raw=billing_table())
