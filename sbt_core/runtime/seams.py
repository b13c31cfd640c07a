"""The former name of :mod:`sbt_core.runtime.contracts`, kept only for the bus modules (``bus/``), which
are being reworked elsewhere and still import from here; import from :mod:`.contracts` instead."""

from .contracts import (
    Delivery,
    DeliveryState,
    EventRecord,
    PutEventsEntryResult,
    QueryParam,
    RouteDoc,
    RouteGroup,
    document_route,
)

__all__ = ["Delivery", "DeliveryState", "EventRecord", "PutEventsEntryResult", "QueryParam", "RouteDoc", "RouteGroup",
           "document_route"]
