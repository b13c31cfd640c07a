"""The service layer against both backends: rows, paging, soft deletes, events, job results,
idempotency and the outbox."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from sbt_core.errors import BadRequestError, ConflictError, NotFoundError
from sbt_core.models import Event, PageRequest, from_json
from sbt_core.tenants import RegistrationCreate, RegistrationUpdate, TenantService, TenantStore

from .conftest import Recorder


def create(body: dict[str, Any]) -> RegistrationCreate:
    return from_json(RegistrationCreate, body)


def register(service: TenantService, name: str = "acme", **kwargs: Any):  # type: ignore[no-untyped-def]
    return service.register(create({"tenantData": {"tenantName": name, "tier": "basic"},
                                    "tenantRegistrationData": {"registrationStatus": "In progress"}}), **kwargs)


def test_register_writes_both_rows_and_emits_onboarding(service: TenantService, recorder: Recorder) -> None:
    answer = register(service)
    reg = service.get_registration(answer.tenant_registration_id)
    assert reg.to_json() == {"tenantRegistrationId": answer.tenant_registration_id, "tenantId": answer.tenant_id,
                             "sbtaws_active": True, "registrationStatus": "In progress"}
    assert service.get_tenant(answer.tenant_id).to_json() == {
        "tenantId": answer.tenant_id, "tenantRegistrationId": answer.tenant_registration_id, "sbtaws_active": True,
        "tenantName": "acme", "tier": "basic"}
    [event] = recorder.events
    assert event.name == "onboardingRequest" and event.source == "sbt.control.plane"
    assert event.detail == {"registrationStatus": "In progress", "tenantName": "acme", "tier": "basic",
                            "tenantId": answer.tenant_id, "tenantRegistrationId": answer.tenant_registration_id}


def test_paging_by_limit_and_next_token(service: TenantService) -> None:
    ids = {register(service, f"t{i}").tenant_registration_id for i in range(5)}
    first = service.list_registrations(PageRequest(limit=2))
    assert len(first.items) == 2 and first.next_token
    seen = [r.tenant_registration_id for r in first.items]
    token = first.next_token
    while token:
        page = service.list_registrations(PageRequest(limit=2, next_token=token))
        seen += [r.tenant_registration_id for r in page.items]
        token = page.next_token
    assert sorted(seen) == sorted(ids) and len(seen) == 5
    assert service.list_registrations().next_token is None  # default limit 10 holds all 5
    tenants = service.list_tenants(PageRequest(limit=4))
    assert len(tenants.items) == 4 and tenants.next_token
    assert len(service.list_tenants(PageRequest(limit=4, next_token=tenants.next_token)).items) == 1


def test_update_merges_into_registration_and_tenant(service: TenantService) -> None:
    answer = register(service)
    reg, tenant = service.update_registration(answer.tenant_registration_id, from_json(RegistrationUpdate, {
        "tenantRegistrationData": {"testKey": "testValue"}, "tenantData": {"testKey": "testValue", "tier": "premium"}}))
    assert reg.data == {"registrationStatus": "In progress", "testKey": "testValue"}
    assert tenant is not None and tenant.data == {"tenantName": "acme", "tier": "premium", "testKey": "testValue"}
    assert service.get_tenant(answer.tenant_id).data["tier"] == "premium"


def test_delete_is_soft_emits_offboarding_once(service: TenantService, recorder: Recorder) -> None:
    answer = register(service)
    service.delete_registration(answer.tenant_registration_id)
    assert service.get_registration(answer.tenant_registration_id).active is False
    assert service.get_tenant(answer.tenant_id).active is False
    [off] = recorder.named("offboardingRequest")
    assert off.detail["tenantId"] == answer.tenant_id and off.detail["tenantName"] == "acme"
    assert off.detail["tenantRegistrationId"] == answer.tenant_registration_id and off.detail["sbtaws_active"] is False
    service.delete_registration(answer.tenant_registration_id)  # a retried DELETE offboards nothing twice
    assert len(recorder.named("offboardingRequest")) == 1


def test_unknown_ids_are_404_with_sbt_aws_text(service: TenantService) -> None:
    with pytest.raises(NotFoundError, match="^Tenant registration not found for id nope$"):
        service.delete_registration("nope")
    with pytest.raises(NotFoundError, match="^Tenant registration not found for id nope$"):
        service.update_registration("nope", RegistrationUpdate())
    with pytest.raises(NotFoundError, match="^Tenant not found for id nope$"):
        service.get_tenant("nope")


@pytest.mark.parametrize(("name", "status"), [("provisionSuccess", "created"), ("provisionFailure", "failed"),
                                              ("deprovisionSuccess", "deleted"), ("deprovisionFailure", "failed")])
def test_job_results_set_status_and_merge_output(service: TenantService, name: str, status: str) -> None:
    answer = register(service)
    output = ({"tenantData": {"tenantStackName": "stack-1"}, "tenantRegistrationData": {"registrationStatus": "x"}}
              if name.endswith("Success") else {"tenantStatus": "Failed to provision tenant."})
    service.apply_job_result(Event.create(name, {"tenantRegistrationId": answer.tenant_registration_id,
                                                 "jobOutput": output}))
    reg = service.get_registration(answer.tenant_registration_id)
    assert reg.status == status
    if name.endswith("Success"):
        assert service.get_tenant(answer.tenant_id).data["tenantStackName"] == "stack-1"


def test_late_provision_result_does_not_undo_deleted(service: TenantService) -> None:
    answer = register(service)
    detail = {"tenantRegistrationId": answer.tenant_registration_id}
    service.apply_job_result(Event.create("deprovisionSuccess", detail))
    assert service.apply_job_result(Event.create("provisionSuccess", detail)) is None
    assert service.get_registration(answer.tenant_registration_id).status == "deleted"


def test_malformed_job_results_are_final_errors(service: TenantService) -> None:
    with pytest.raises(BadRequestError, match="tenantRegistrationId"):
        service.apply_job_result(Event.create("provisionSuccess", {"jobOutput": {}}))
    with pytest.raises(NotFoundError):
        service.apply_job_result(Event.create("provisionSuccess", {"tenantRegistrationId": "missing"}))


def test_idempotency_key_replays_first_answer_and_emits_once(service: TenantService, recorder: Recorder) -> None:
    first = register(service, idempotency_key="key-1", principal="alice")
    again = register(service, idempotency_key="key-1", principal="alice")
    assert again.replayed and (again.tenant_registration_id, again.tenant_id) == (
        first.tenant_registration_id, first.tenant_id)
    assert len(service.list_registrations().items) == 1
    assert len(recorder.named("onboardingRequest")) == 1
    other = register(service, idempotency_key="key-1", principal="bob")  # keys are per caller
    assert not other.replayed
    with pytest.raises(ConflictError, match="different request body"):
        register(service, "other-name", idempotency_key="key-1", principal="alice")
    with pytest.raises(BadRequestError, match="Idempotency-Key"):
        register(service, idempotency_key="x" * 300)


def test_concurrent_retries_with_one_key_create_one_registration(database_url: str, recorder: Recorder) -> None:
    services = [TenantService(TenantStore(database_url), recorder) for _ in range(2)]
    services[0].start()
    answers: list[Any] = []
    barrier = threading.Barrier(4)

    def run(svc: TenantService) -> None:
        barrier.wait()
        answers.append(register(svc, idempotency_key="same"))

    threads = [threading.Thread(target=run, args=(services[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 4 and len({a.tenant_registration_id for a in answers}) == 1
    assert sum(not a.replayed for a in answers) == 1
    assert len(services[0].list_registrations().items) == 1
    assert len(recorder.named("onboardingRequest")) == 1
    for svc in services:
        svc.close()


def test_outbox_keeps_events_the_bus_refused(service: TenantService, recorder: Recorder) -> None:
    recorder.fail = True
    answer = register(service)  # the registration commits; its event waits in the outbox
    assert service.get_registration(answer.tenant_registration_id).active
    recorder.fail = False
    later = register(service, "later")  # the next change takes the backlog with it
    assert [e.detail["tenantId"] for e in recorder.named("onboardingRequest")] == [answer.tenant_id, later.tenant_id]
    assert service.flush_outbox() == 0
    recorder.fail = True
    third = register(service, "third")
    recorder.fail = False
    assert service.flush_outbox() == 1
    assert recorder.named("onboardingRequest")[-1].detail["tenantId"] == third.tenant_id


def test_outbox_published_on_start_after_a_crash(database_url: str, recorder: Recorder) -> None:
    detached = TenantService(TenantStore(database_url))  # no bus: as a process that died before publishing
    detached.start()
    answer = register(detached)
    detached.close()
    restarted = TenantService(TenantStore(database_url), recorder)
    restarted.start()
    assert [e.detail["tenantId"] for e in recorder.named("onboardingRequest")] == [answer.tenant_id]
    restarted.close()


def test_reserved_keys_and_bad_bodies_are_refused(service: TenantService, recorder: Recorder) -> None:
    cases = [
        ({}, "tenantData: required field missing"),
        ({"tenantData": "acme"}, "tenantData: expected a JSON object, got a string"),
        ({"tenantData": {}, "tenantRegistrationData": []}, "tenantRegistrationData: expected a JSON object"),
        ({"tenantData": {}, "extra": 1}, "unknown field(s) extra"),
        ({"tenantData": {"tenantId": "mine"}}, "tenantData.tenantId: set by the control plane"),
        ({"tenantData": {}, "tenantRegistrationData": {"sbtaws_active": False}},
         "tenantRegistrationData.sbtaws_active"),
    ]
    for body, message in cases:
        with pytest.raises(BadRequestError) as info:
            create(body)
        assert message in info.value.message
    assert service.list_registrations().items == [] and recorder.events == []


def test_tenants_crud_for_machine_clients(service: TenantService) -> None:
    tenant = service.create_tenant({"tenantName": "direct", "tenantRegistrationId": "r-1"})
    assert tenant.to_json() == {"tenantId": tenant.tenant_id, "tenantRegistrationId": "r-1", "sbtaws_active": True,
                                "tenantName": "direct"}
    updated = service.update_tenant(tenant.tenant_id, {"tenantId": tenant.tenant_id, "tier": "gold"})
    assert updated.data == {"tenantName": "direct", "tier": "gold"}
    with pytest.raises(BadRequestError, match="body.tenantId"):
        service.update_tenant(tenant.tenant_id, {"tenantId": "other"})
    with pytest.raises(BadRequestError, match="body.sbtaws_active"):
        service.create_tenant({"sbtaws_active": False})
    assert service.delete_tenant(tenant.tenant_id).active is False
    assert service.get_tenant(tenant.tenant_id).active is False
    with pytest.raises(NotFoundError, match="Tenant not found for id x"):
        service.update_tenant("x", {"a": 1})


def test_sbt_aws_naming_prefixes_emitted_detail_types(database_url: str, recorder: Recorder) -> None:
    svc = TenantService(TenantStore(database_url), recorder, naming="sbt_aws")
    svc.start()
    answer = register(svc)
    svc.delete_registration(answer.tenant_registration_id)
    assert [e.detail_type for e in recorder.events] == ["sbt_aws_onboardingRequest", "sbt_aws_offboardingRequest"]
    svc.close()


def test_reads_do_not_wait_for_a_writer(service: TenantService) -> None:
    answer = register(service)
    seen: list[Any] = []
    with service.store.transaction() as conn:  # a writer holding its transaction (SQLite: the write lock)
        service.store.get_registration(conn, answer.tenant_registration_id, for_update=True)
        reader = threading.Thread(target=lambda: seen.append(service.get_registration(answer.tenant_registration_id)))
        reader.start()
        reader.join(20)  # a hang guard: with a locking read this would wait for the writer, i.e. forever here
        assert [r.tenant_registration_id for r in seen] == [answer.tenant_registration_id]


def test_processes_starting_together_create_the_tables_once(database_url: str) -> None:
    services = [TenantService(TenantStore(database_url)) for _ in range(4)]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(services))

    def start(svc: TenantService) -> None:
        barrier.wait()
        try:
            svc.start()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(svc,)) for svc in services]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    register(services[0])
    assert len(services[3].list_registrations().items) == 1
    for svc in services:
        svc.close()
