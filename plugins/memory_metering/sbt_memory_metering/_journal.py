"""The engine's changes as log records, and their replay.

Records say what was *applied*, after validation, so replay never consults the clock, the horizon or
the policies again: an event accepted 40 days ago replays although it is now outside the horizon.
Ingested events are logged as the columns the store appended (event time, value, series id,
identifier hash) plus the ingestion time their dedup was decided against; replay appends the same
columns in the same order, so dedup decides the same way and every row keeps its number.

Series ids, tenant codes and UNIQUE_COUNT text codes are small ints handed out in order. Before a
record that uses new ones, a ``dict`` record lists what was handed out since the last one (tenant ids,
series as tenant code + dimension texts, texts); replay hands them out again and checks each gets the
same code, so a log that does not match its snapshot is an error, never a silent mix-up.

Payloads: one kind byte, then
- ``J`` JSON: ``{"op": ...}`` for meters, customers, cancellations, purges, dropped counts, ``dict``;
- ``O`` one event: ``<Iqdiq`` (meter sequence, event ms, value, series, ingestion ms) + identifier UTF-8;
- ``M`` many events of one meter: ``<IIq`` (meter sequence, count, ingestion ms) + the int64 times,
  float64 values, int32 series and uint64 identifier hashes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np

from sbt_core.models import Meter, from_json, to_json

from ._engine import Engine
from ._recorder import Recorder
from ._store import MeterStore
from ._wal import Log, LogCorruptError

__all__ = ["Journal", "ReplayError", "replay_segment"]

_ONE = struct.Struct("<Iqdiq")
_MANY = struct.Struct("<IIq")
_ONE_KIND = b"O"


class ReplayError(Exception):
    """A record that does not apply to the state before it (a log that does not match its snapshot)."""


class Journal(Recorder):
    """Writes the engine's changes to a :class:`~._wal.Log`. Called under the engine's lock."""

    def __init__(self, engine: Engine, log: Log) -> None:
        self.engine = engine
        self.log = log
        self._tenants = 0
        #: store -> [meter sequence, series logged, texts logged]
        self._stores: dict[MeterStore, list[int]] = {}
        self.mark_all_logged()

    def mark_all_logged(self) -> None:
        """Take the engine's codes as known to the log (after a replay, or by a snapshot taken now)."""
        engine = self.engine
        self._tenants = len(engine.tenant_names)
        self._stores = {s: [engine.seq[m], len(s.series_tenant), len(s.texts)] for m, s in engine.meters.items()}

    # -- records -------------------------------------------------------------------------------------

    def _json(self, record: dict[str, Any]) -> None:
        if len(self.engine.tenant_names) != self._tenants:
            self._dict(None)
        self.log.append(b"J" + json.dumps(record, separators=(",", ":")).encode())

    def _dict(self, store: MeterStore | None) -> None:
        """A ``dict`` record: tenants, and ``store``'s series and texts, handed out since the last one."""
        names = self.engine.tenant_names
        record: dict[str, Any] = {"op": "dict", "tenants": [self._tenants, names[self._tenants:]]}
        self._tenants = len(names)
        if store is not None:
            counts = self._stores[store]
            seq, series_from, texts_from = counts
            dims = store.dim_values
            record["meter"] = seq
            record["series"] = [series_from, [
                [store.series_tenant[s], [dims[j][c] for j, c in enumerate(store.series_dims[s])]]
                for s in range(series_from, len(store.series_tenant))]]
            record["texts"] = [texts_from, store.text_values[texts_from:]]
            counts[1], counts[2] = len(store.series_tenant), len(store.text_values)
        self.log.append(b"J" + json.dumps(record, separators=(",", ":")).encode())

    def _counts(self, store: MeterStore) -> list[int]:
        counts = self._stores[store]
        if (len(store.series_tenant) != counts[1] or len(store.texts) != counts[2]
                or len(self.engine.tenant_names) != self._tenants):
            self._dict(store)
        return counts

    def meter_created(self, meter: Meter) -> None:
        store = self.engine.meters[meter.meter_id]
        seq = self.engine.seq[meter.meter_id]
        self._stores[store] = [seq, 0, 0]
        self._json({"op": "create", "seq": seq, "meter": to_json(meter)})

    def meter_updated(self, meter: Meter) -> None:
        self._json({"op": "update", "meter": to_json(meter)})

    def meter_deleted(self, meter_id: str) -> None:
        for store in [s for s in self._stores if s.meter.meter_id == meter_id]:
            del self._stores[store]
        self._json({"op": "delete", "meterId": meter_id})

    def customer(self, tenant_id: str, active: bool) -> None:
        self._json({"op": "customer", "tenantId": tenant_id, "active": active})

    def purged(self, tenant_id: str) -> None:
        self._json({"op": "purge", "tenantId": tenant_id})

    def cancelled_ids(self, identifiers: list[str]) -> None:
        self._json({"op": "cancelIds", "identifiers": identifiers})

    def cancelled_range(self, meter_id: str, from_ms: int, to_ms: int, tenant_id: str | None) -> None:
        self._json({"op": "cancelRange", "meterId": meter_id, "from": from_ms, "to": to_ms, "tenantId": tenant_id})

    def dropped(self, count: int) -> None:
        self._json({"op": "dropped", "count": count})

    def ingested_one(self, store: MeterStore, ms: int, value: float, series: int, recv: int,
                     identifier: str) -> None:
        counts = self._stores[store]  # _counts, inlined: this is the per-event hot path
        if (len(store.series_tenant) != counts[1] or len(store.texts) != counts[2]
                or len(self.engine.tenant_names) != self._tenants):
            self._dict(store)
        self.log.append(_ONE_KIND + _ONE.pack(counts[0], ms, value, series, recv) + identifier.encode())

    def ingested(self, store: MeterStore, ts: np.ndarray, val: np.ndarray, ser: np.ndarray,
                 hashes: np.ndarray, recv: int) -> None:
        seq = self._counts(store)[0]
        # The columns go to the log as they are (no copy): store.append copied what it keeps, and
        # nobody writes to these arrays before commit() has written them.
        self.log.append(b"M" + _MANY.pack(seq, len(ts), recv),
                        np.ascontiguousarray(ts, dtype=np.int64).data, np.ascontiguousarray(val, dtype=np.float64).data,
                        np.ascontiguousarray(ser, dtype=np.int32).data,
                        np.ascontiguousarray(hashes, dtype=np.uint64).data)

    def commit(self) -> None:
        self.log.commit()


# -- replay ----------------------------------------------------------------------------------------


class _Replay:
    """Applies records to an engine whose recorder is the no-op base (nothing is logged again)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.by_seq = {engine.seq[m]: s for m, s in engine.meters.items()}

    def store(self, seq: int) -> MeterStore:
        store = self.by_seq.get(seq)
        if store is None:
            raise ReplayError(f"events of meter #{seq}, which does not exist at this point")
        return store

    def apply(self, payload: memoryview) -> None:
        kind = payload[:1].tobytes()
        if kind == b"O":
            seq, ms, value, series, recv = _ONE.unpack_from(payload, 1)
            store = self.store(seq)
            if series >= len(store.series_tenant):
                raise ReplayError(f"series {series} of meter #{seq} was never defined")
            store.p_ts.append(ms)
            store.p_val.append(value)
            store.p_ser.append(series)
            store.p_recv.append(recv)
            store.p_ids.append(payload[1 + _ONE.size:].tobytes().decode())
            if len(store.p_ids) >= self.engine.settings.pending_flush_events:
                store.flush()
        elif kind == b"M":
            seq, count, recv = _MANY.unpack_from(payload, 1)
            store = self.store(seq)
            at = 1 + _MANY.size
            if len(payload) != at + 28 * count:
                raise ReplayError(f"a batch of {count} events has {len(payload) - at} bytes")
            columns = []
            for dtype, width in ((np.int64, 8), (np.float64, 8), (np.int32, 4), (np.uint64, 8)):
                columns.append(np.frombuffer(payload, dtype=dtype, count=count, offset=at))
                at += width * count
            ts, val, ser, hashes = columns
            if count and int(ser.max()) >= len(store.series_tenant):
                raise ReplayError(f"a batch of meter #{seq} uses a series that was never defined")
            store.flush()
            store.append(ts, val, ser, hashes, recv)
        elif kind == b"J":
            self.apply_json(json.loads(payload[1:].tobytes()))
        else:
            raise ReplayError(f"unknown record kind {kind!r}")

    def apply_json(self, record: dict[str, Any]) -> None:
        engine, op = self.engine, record["op"]
        if op == "dict":
            start, names = record["tenants"]
            for i, name in enumerate(names):
                if engine.tenant_code(name) != start + i:
                    raise ReplayError(f"tenant {name!r} does not get code {start + i} again")
            if "meter" in record:
                store = self.store(record["meter"])
                start, series = record["series"]
                for i, (tenant, dims) in enumerate(series):
                    if store.series_id(tenant, tuple(dims)) != start + i:
                        raise ReplayError(f"series {start + i} of meter #{record['meter']} is defined differently")
                start, texts = record["texts"]
                for i, text in enumerate(texts):
                    if store.text_code(text) != start + i:
                        raise ReplayError(f"text {start + i} of meter #{record['meter']} is defined differently")
        elif op == "create":
            meter = from_json(Meter, record["meter"])
            if engine._next_seq != record["seq"] or meter.meter_id in engine.meters:
                raise ReplayError(f"meter {meter.meter_id!r} is created out of order")
            self.by_seq[record["seq"]] = engine._add_store(meter)
        elif op == "update":
            meter = from_json(Meter, record["meter"])
            engine._store(meter.meter_id).meter = meter
        elif op == "delete":
            self.by_seq.pop(engine.seq.get(record["meterId"], -1), None)
            engine.delete_meter(record["meterId"])
        elif op == "customer":
            (engine.create_customer if record["active"] else engine.delete_customer)(record["tenantId"])
        elif op == "purge":
            engine.purge_tenant(record["tenantId"])
        elif op == "cancelIds":
            engine.cancel_identifiers(record["identifiers"])
        elif op == "cancelRange":
            engine.cancel_range(record["meterId"], record["from"], record["to"], record["tenantId"])
        elif op == "dropped":
            engine.dropped += int(record["count"])
        else:
            raise ReplayError(f"unknown operation {op!r}")


def replay_segment(engine: Engine, path: Path, frames: list[tuple[int, memoryview]]) -> int:
    """Apply a segment's records in order; returns how many.

    :raises LogCorruptError: a record does not apply (names the file and the record's offset).
    """
    state = _Replay(engine)
    for offset, payload in frames:
        try:
            state.apply(payload)
        except LogCorruptError:
            raise
        except Exception as exc:  # a record that checksums but does not apply: a log from elsewhere
            raise LogCorruptError(path, offset, f"a record does not apply ({type(exc).__name__}: {exc})") from exc
    return len(frames)
