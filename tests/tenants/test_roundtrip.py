"""Whatever JSON a client registers comes back unchanged, on both backends (property-based)."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sbt_core.tenants._records import RESERVED_KEYS

text = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63)
           | st.floats(allow_nan=False, allow_infinity=False) | text)
json_values = st.recursive(scalars,
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
                           max_leaves=12)
objects = st.dictionaries(text.filter(lambda k: k not in RESERVED_KEYS), json_values, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tenant_data=objects, registration_data=objects)
def test_registered_json_round_trips(api: Any, tenant_data: dict[str, Any], registration_data: dict[str, Any]) -> None:
    answer = api.post("/tenant-registrations", json={"tenantData": tenant_data,
                                                     "tenantRegistrationData": registration_data})
    assert answer.status_code == 201, answer.text
    ids = answer.json()["data"]
    tenant = api.get(f"/tenants/{ids['tenantId']}").json()["data"]
    registration = api.get(f"/tenant-registrations/{ids['tenantRegistrationId']}").json()["data"]
    assert {k: v for k, v in tenant.items() if k not in RESERVED_KEYS} == tenant_data
    assert {k: v for k, v in registration.items() if k not in RESERVED_KEYS} == registration_data
