"""Fixtures of the stripe_billing tests: localstripe on 127.0.0.1, a provider built through sbt's own config and
selection path, and a loopback receiver for localstripe's signed webhooks.

Nothing here reaches the internet: localstripe is bound to loopback with the wrapper from
localstripe implements no Billing Meters, and Stripe's Billing Meter endpoints (which localstripe lacks) are
answered by ``responses`` in the push tests.
"""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import requests
import stripe
from sbt_stripe_billing import StripeBilling

from sbt_core.config import load_config
from sbt_core.errors import SbtError
from sbt_core.models import Event, WebhookRequest
from sbt_core.plugins import BillingFacade, Providers, build_providers, discover
from sbt_core.testing import wait_for as testing_wait_for
from sbt_core.testing.processes import background_server, free_port

API_KEY = "sk_test_sbt_fixture"
WEBHOOK_SECRET = "whsec_sbt_fixture_secret"
#: Binds localstripe to loopback only (its CLI listens on every interface).
_WRAPPER = ("import sys; from aiohttp import web; from localstripe.server import app; "
            "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse any connection that is not to this machine: a test that forgot to stub Stripe fails instead
    of reaching api.stripe.com."""
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else address
        if self.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"test tried to reach {host}: tests stay on 127.0.0.1")
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    resolve = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "127.0.0.1", "::1", "localhost"):
            raise OSError(f"test tried to resolve {host}: tests stay on 127.0.0.1")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    """Poll until ``predicate()`` is truthy (localstripe delivers webhooks about 1 s after the event)."""
    return testing_wait_for(predicate, what, timeout)


@pytest.fixture(scope="session")
def localstripe_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A localstripe process on 127.0.0.1:<free port>, run in a temp cwd (its pickle file lands there)."""
    cwd = tmp_path_factory.mktemp("localstripe")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return requests.get(f"{url}/v1/customers", auth=(API_KEY, ""), timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    with background_server([sys.executable, "-c", _WRAPPER, str(port)], ready=answers,
                           log_path=cwd / "localstripe.log", cwd=cwd, name="localstripe", timeout=30):
        yield url


@pytest.fixture
def stripe_url(localstripe_server: str) -> str:
    """localstripe, emptied (``DELETE /_config/data``), with a 0-amount metered plan ``plan_metered``
    (its first invoice is paid at once) and a 5.00 USD monthly plan ``plan_paid``."""
    assert requests.delete(f"{localstripe_server}/_config/data", auth=(API_KEY, ""), timeout=5).status_code == 200
    client = stripe_client(localstripe_server)
    product = client.v1.products.create(params={"name": "sbt test product"})
    client.v1.plans.create(params={"id": "plan_metered", "product": product.id, "amount": 0, "currency": "usd",
                                   "interval": "month", "usage_type": "metered"})
    client.v1.plans.create(params={"id": "plan_paid", "product": product.id, "amount": 500, "currency": "usd",
                                   "interval": "month"})
    return localstripe_server


def stripe_client(url: str) -> stripe.StripeClient:
    """A plain SDK client on localstripe, for the tests' own look at Stripe's state."""
    return stripe.StripeClient(API_KEY, base_addresses={"api": url}, max_network_retries=0)


@attrs.define
class Billing:
    """A ``stripe`` billing provider built through ``load_config`` + ``build_providers`` (as ``sbt serve``
    does), with the events it publishes collected in ``events``."""

    providers: Providers
    events: list[Event]

    @property
    def facade(self) -> BillingFacade:
        assert self.providers.billing is not None
        return self.providers.billing

    @property
    def provider(self) -> StripeBilling:
        instance = self.providers.instances["billing"]
        assert isinstance(instance, StripeBilling)
        return instance

    def of(self, detail_type: str, tenant: str | None = None) -> list[Event]:
        """Published events of ``detail_type`` (of ``tenant`` only, when given: localstripe delivers about
        1 s late, so an earlier test's webhook may still arrive at this test's receiver)."""
        return [e for e in self.events if e.detail_type == detail_type
                and (tenant is None or e.detail.get("tenantId") == tenant)]


@pytest.fixture
def make_billing(tmp_path: Path) -> Iterator[Callable[..., Billing]]:
    """``make_billing(**settings)``: a provider with the fixture's key and webhook secret plus ``settings``;
    each call gets its own state directory unless ``state_dir`` is given."""
    built: list[StripeBilling] = []

    def make(state_dir: Path | None = None, **settings: Any) -> Billing:
        catalog = discover(entry_points=False, builtins=True, extra={"stripe": StripeBilling})
        table = {"type": "stripe", "api_key": API_KEY, "webhook_secret": WEBHOOK_SECRET, **settings}
        config = load_config(catalog, raw={"providers": {"billing": table}})
        root = state_dir or (tmp_path / f"state{len(built)}")
        providers = build_providers(catalog, config, state_dir=root)
        events: list[Event] = []
        providers.attach(events.append)
        billing = Billing(providers, events)
        built.append(billing.provider)
        return billing

    yield make
    for provider in built:
        provider.store.close()


@pytest.fixture
def localstripe_billing(stripe_url: str, make_billing: Callable[..., Billing]) -> Billing:
    """A provider on localstripe: plans (localstripe has no Prices), lookup by listing (no Search)."""
    return make_billing(api_base=stripe_url, item_kind="plan", customer_lookup="list")


def onboarding(tenant_id: str, **detail: Any) -> Event:
    base = {"tenantId": tenant_id, "tenantName": f"Tenant {tenant_id}", "email": f"admin@{tenant_id}.example",
            "tier": "basic", "prices": [{"id": "plan_metered", "metricName": "productsSold"}]}
    return Event.create("onboardingRequest", {**base, **detail})


@attrs.define
class Delivery:
    """One webhook delivery as the receiver saw it: the raw request and what the hook answered."""

    request: WebhookRequest
    status: int
    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(json.loads(self.request.body)["type"])

    @property
    def customer(self) -> str | None:
        obj = json.loads(self.request.body)["data"]["object"]
        return obj.get("customer") if obj.get("object") != "customer" else obj.get("id")


class WebhookReceiver:
    """A loopback HTTP server that hands each ``POST /billing/{path}`` to a billing facade's webhook hook,
    as the control plane's route does, and records every delivery."""

    def __init__(self, facade: BillingFacade) -> None:
        self.facade = facade
        self.deliveries: list[Delivery] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = WebhookRequest(path=self.path.removeprefix("/billing/"), body=body,
                                         headers={k.lower(): v for k, v in self.headers.items()})
                try:
                    answer = receiver.facade.webhook(request)
                    status, payload = (answer.status, answer.body) if answer else (200, {"received": True})
                except SbtError as exc:
                    status, payload = exc.status, {"message": exc.message}
                receiver.deliveries.append(Delivery(request, status, payload))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/billing/stripe"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def of(self, event_type: str, customer: str | None = None) -> list[Delivery]:
        """Deliveries of ``event_type`` (about ``customer`` only, when given)."""
        return [d for d in self.deliveries if d.type == event_type and (customer is None or d.customer == customer)]

    def first(self, event_type: str, customer: str | None = None) -> Delivery:
        """The first delivery of ``event_type`` (about ``customer``), waiting for localstripe to send it."""
        return wait_for(lambda: self.of(event_type, customer), event_type)[0]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def register_webhook(stripe_url: str, url: str, events: list[str] | None = None) -> None:
    """Point localstripe's (single, overwritten) test webhook endpoint at ``url``."""
    data: list[tuple[str, str]] = [("url", url), ("secret", WEBHOOK_SECRET)]
    data += [("events[]", e) for e in events or []]
    answer = requests.post(f"{stripe_url}/_config/webhooks/sbt-tests", data=data, auth=(API_KEY, ""), timeout=5)
    assert answer.status_code == 200, answer.text


@pytest.fixture
def webhook_receiver(localstripe_billing: Billing, stripe_url: str) -> Iterator[WebhookReceiver]:
    """localstripe's signed webhooks -> a loopback receiver -> ``billing_webhook`` of ``localstripe_billing``."""
    receiver = WebhookReceiver(localstripe_billing.facade)
    register_webhook(stripe_url, receiver.url)
    yield receiver
    # Send later deliveries nowhere useful rather than to a closed port of the next test.
    receiver.close()


@pytest.fixture
def onboarding_event() -> Callable[..., Event]:
    """``onboarding_event(tenant_id, **detail)``: an sbt-aws-shaped ``onboardingRequest`` (plan_metered)."""
    return onboarding


@pytest.fixture
def wait() -> Callable[..., Any]:
    """:func:`wait_for`, for test modules (conftest is not importable under ``--import-mode=importlib``)."""
    return wait_for
