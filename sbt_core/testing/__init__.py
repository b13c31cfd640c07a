"""Test helpers for sbt and its plugins (also a pytest plugin: fixtures ``sbt_control_plane``, ``sbt_events``).

- :func:`start_control_plane` / :class:`Harness`: an in-process control plane with chosen provider
  classes registered without installing them, an authenticated test client, tokens, an event recorder.
- :mod:`sbt_core.testing.providers`: recording providers with failure injection (``RecordingBilling``…).
- :func:`sbt_core.testing.transport.check_transport`: the contract a new bus transport (a broker) must meet.
- :mod:`sbt_core.testing.events`: builders of SBT events (``onboarding_request(...)``, ``ingest_usage(...)``…).
- :func:`wait_for`: poll until something asynchronous has happened (a webhook, another process's work).
- :mod:`sbt_core.testing.processes`: a real server as a subprocess on a free loopback port
  (``free_port()``, ``background_server(...)``), as the e2e tests run ``sbt serve``, moto_server and localstripe.
"""

from .events import (
    deprovision_failure,
    deprovision_success,
    ingest_usage,
    offboarding_request,
    onboarding_request,
    provision_failure,
    provision_success,
    sbt_event,
    tenant_user_created,
    tenant_user_deleted,
)
from .harness import TEST_EVENTS_CONFIG, EventRecorder, Harness, deep_merge, start_control_plane
from .providers import RecordingBilling, RecordingMetering, RecordingProvider
from .waiting import wait_for

__all__ = [
    "TEST_EVENTS_CONFIG", "EventRecorder", "Harness", "deep_merge", "deprovision_failure", "deprovision_success",
    "RecordingBilling", "RecordingMetering", "RecordingProvider",
    "ingest_usage", "offboarding_request", "onboarding_request", "provision_failure", "provision_success",
    "sbt_event", "start_control_plane", "tenant_user_created", "tenant_user_deleted", "wait_for",
]
