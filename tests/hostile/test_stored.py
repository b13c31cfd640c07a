"""Reads never fail on what is stored: records an older version stored with values no answer can carry
(a tenant with a non-finite number, a dead letter with NaN, an unpaired surrogate, a meter's infinite
sum) are listed with those values replaced and flagged, and the start-up check names them."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sbt_memory_metering import _engine as memory_engine

from sbt_core.input_policy import REPLACED_KEY
from sbt_core.models import Event
from sbt_core.runtime.bus.dead_letters import DeadLetter
from sbt_core.tenants import TenantRegistry
from sbt_core.tenants._records import Tenant, TenantRegistration

from ._api import USAGE_RANGE, Api, broken_reads, start


def store_as_an_older_version_did(api: Api) -> str:
    """Write bad records straight into the stores, past the input policy; returns the meter's id."""
    cp = api.harness.control_plane
    [registry] = [c for c in cp.components if isinstance(c, TenantRegistry)]
    store = registry.service.store
    with store.transaction() as conn:
        store.insert_registration(conn, TenantRegistration("reg-old", "tenant-old", True, {"plan": float("nan")}))
        store.insert_tenant(conn, Tenant("tenant-old", "reg-old", True, {"tenantName": float("inf"),
                                                                          "label": "a\ud800b"}))
    event = Event(detail_type="ingestUsage", source="sbt.application.plane", id="evt-old",
                  detail={"tenantId": "t\ud800", "properties": {"value": float("nan")}})
    cp.bus.dead_letter_store.add([DeadLetter(event, "metering_ingest_usage_event", 3, "old", datetime.now(UTC))])
    meter = api.client.post("/meters", json={"name": "m", "eventName": "m"}).json()["data"]["meterId"]
    with pytest.MonkeyPatch.context() as patch:  # the version before ingest refused sums beyond the range
        patch.setattr(memory_engine, "MAX_MAGNITUDE", float("inf"))
        results = cp.providers.instances["metering"].ingest_batch([
            {"tenantId": "t1", "eventName": "m", "identifier": f"big-{i}", "properties": {"value": 1e308}}
            for i in range(2)])
    assert [r.status for r in results] == ["accepted", "accepted"]
    return str(meter)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy summing the old infinity
def test_stored_records_no_answer_can_carry_are_listed_replaced_flagged_and_reported_at_start_up(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    first = start(state, "embedded", None)
    try:
        meter = store_as_an_older_version_did(Api(first))
    finally:
        first.close()

    with caplog.at_level(logging.WARNING, logger="sbt.input"):
        reopened = start(state, "embedded", None)
    try:
        api = Api(reopened)
        reads = api.read_all()
        assert broken_reads(reads) == {}
        [tenant] = [t for t in reads["/tenants"][1]["data"] if t["tenantId"] == "tenant-old"]
        assert tenant["tenantName"] is None and tenant["label"] == "a\ufffdb"
        assert sorted(tenant[REPLACED_KEY]) == ["label", "tenantName"]
        assert reads["/tenants/tenant-old"][1]["data"][REPLACED_KEY] == tenant[REPLACED_KEY]
        [registration] = reads["/tenant-registrations"][1]["data"]
        assert registration["plan"] is None and registration[REPLACED_KEY] == ["plan"]
        [letter] = reads["/dead-letters"][1]["data"]
        assert letter["event"]["detail"]["properties"]["value"] is None
        assert sorted(letter[REPLACED_KEY]) == ["event.detail.properties.value", "event.detail.tenantId"]
        [row] = reads[f"/usage/{meter}?{USAGE_RANGE}"][1]["data"]
        assert row["value"] is None and row[REPLACED_KEY] == ["value"]
    finally:
        reopened.close()
    logged = " ".join(r.getMessage() for r in caplog.records)
    for record_id in ("reg-old", "tenant-old", "evt-old"):
        assert record_id in logged
