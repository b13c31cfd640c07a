"""Meters: create, fetch, fetch all (paginated), update, delete."""

from __future__ import annotations

import pytest
from sbt_memory_metering import MemoryMetering

from sbt_core.errors import BadRequestError, ConflictError, NotFoundError
from sbt_core.models import Aggregation, MeterCreate, MeterStatus, MeterUpdate


def test_create_and_fetch(provider: MemoryMetering) -> None:
    meter = provider.metering_create_meter(MeterCreate(name="API calls", event_name="api_calls", group_by=("region",)))
    assert meter.aggregation is Aggregation.SUM and meter.value_property == "value"
    assert meter.status is MeterStatus.ACTIVE
    assert provider.metering_fetch_meter(meter.meter_id) == meter


def test_event_name_is_unique(provider: MemoryMetering) -> None:
    provider.metering_create_meter(MeterCreate(name="a", event_name="api_calls"))
    with pytest.raises(ConflictError, match="api_calls"):
        provider.metering_create_meter(MeterCreate(name="b", event_name="api_calls", aggregation=Aggregation.COUNT))


def test_unknown_meter(provider: MemoryMetering) -> None:
    with pytest.raises(NotFoundError):
        provider.metering_fetch_meter("nope")
    with pytest.raises(NotFoundError):
        provider.metering_update_meter("nope", MeterUpdate(name="x"))
    with pytest.raises(NotFoundError):
        provider.metering_delete_meter("nope")


def test_fetch_all_pages_oldest_first(provider: MemoryMetering) -> None:
    ids = [provider.metering_create_meter(MeterCreate(name=f"m{i}", event_name=f"e{i}")).meter_id for i in range(5)]
    provider.metering_delete_meter(ids[1])
    seen, token = [], None
    while True:
        page = provider.metering_fetch_all_meters(2, token)
        assert len(page.items) <= 2
        seen += [m.meter_id for m in page.items]
        token = page.next_token
        if token is None:
            break
    assert seen == [ids[0], *ids[2:]]


def test_fetch_all_refuses_a_malformed_token(provider: MemoryMetering) -> None:
    with pytest.raises(BadRequestError, match="next_token"):
        provider.metering_fetch_all_meters(10, "!!!not-a-token")


def test_update_changes_only_mutable_fields(provider: MemoryMetering) -> None:
    meter = provider.metering_create_meter(MeterCreate(name="a", event_name="calls", description="old"))
    updated = provider.metering_update_meter(meter.meter_id, MeterUpdate(name="renamed", status=MeterStatus.INACTIVE))
    assert (updated.name, updated.description, updated.status) == ("renamed", "old", MeterStatus.INACTIVE)
    assert updated.event_name == meter.event_name and updated.modified >= meter.modified
    assert provider.metering_fetch_meter(meter.meter_id) == updated


def test_delete_frees_the_event_name(provider: MemoryMetering) -> None:
    meter = provider.metering_create_meter(MeterCreate(name="a", event_name="calls"))
    assert provider.metering_delete_meter(meter.meter_id) == meter
    with pytest.raises(NotFoundError):
        provider.metering_fetch_meter(meter.meter_id)
    provider.metering_create_meter(MeterCreate(name="b", event_name="calls"))
