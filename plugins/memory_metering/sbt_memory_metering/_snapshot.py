"""Snapshot of the engine to one ``.npz`` file (NumPy arrays + a JSON header), and back.

No pickle: the file is read with ``allow_pickle=False``, so a tampered snapshot cannot run code.
Written to a temporary file, fsynced, then renamed over the old one (and the directory fsynced), so a
crash mid-write leaves the previous snapshot whole. Every member of the zip carries a CRC32 that is
checked as it is read, so a damaged file is an error naming it, never a partial load.

Taking a snapshot is two steps so that ingest goes on while it is written: :func:`capture` under the
engine's lock (views and small copies, milliseconds), then :func:`write` without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from sbt_core.models import Meter, from_json, to_json

from ._engine import Engine
from ._memory import release_free_heap
from ._wal import fsync_dir

__all__ = ["FORMAT", "Captured", "SnapshotError", "capture", "load", "save", "write"]

#: 2: dedup runs kept apart (``m<i>_runLengths``), a log position (``logStart``). 1 is still read.
FORMAT = 2
_ARRAYS = ("ts", "val", "ser", "flags", "series_tenant", "series_dims")


class SnapshotError(ValueError):
    """The snapshot file exists but cannot be read back whole: ``path`` names it."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path, self.why = path, why


@attrs.frozen
class Captured:
    """An engine's content at one instant, ready to be written without the lock."""

    header: dict[str, Any]
    stores: list[dict[str, Any]]
    events: int


def capture(engine: Engine) -> Captured:
    """The engine's content now; call under ``engine.lock`` (taken here too) and write it later."""
    with engine.lock:
        meters, stores, events = [], [], 0
        for store in engine.meters.values():
            state = store.state()
            stores.append(state)
            meters.append({"meter": to_json(store.meter), "seq": engine.seq[store.meter.meter_id],
                           "dimValues": state["dim_values"], "texts": state["texts"]})
            events += store.n
        header = {"format": FORMAT, "tenants": list(engine.tenant_names), "customers": dict(engine.customers),
                  "nextSeq": engine._next_seq, "dropped": engine.dropped, "meters": meters}
        return Captured(header, stores, events)


def write(captured: Captured, path: Path, *, log_start: int = 0) -> None:
    """Write ``captured`` durably to ``path`` (temporary file, fsync, rename, fsync of the directory).

    :param log_start: the first log segment the snapshot does not hold (start-up replays from there).
    """
    arrays: dict[str, np.ndarray] = {}
    for i, state in enumerate(captured.stores):
        for name in _ARRAYS:
            arrays[f"m{i}_{name}"] = state[name]
        runs = state["runs"]
        arrays[f"m{i}_hashes"] = np.concatenate([h for h, _ in runs]) if runs else np.zeros(0, dtype=np.uint64)
        arrays[f"m{i}_rows"] = np.concatenate([r for _, r in runs]) if runs else np.zeros(0, dtype=np.uint32)
        arrays[f"m{i}_runLengths"] = np.array([len(h) for h, _ in runs], dtype=np.int64)
    header = {**captured.header, "logStart": log_start}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as savez's flags
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def save(engine: Engine, path: Path, *, log_start: int = 0) -> int:
    """Write every meter, tenant, customer and event to ``path``; returns the number of events."""
    captured = capture(engine)
    write(captured, path, log_start=log_start)
    return captured.events


def load(engine: Engine, path: Path) -> tuple[int, int]:
    """Replace the engine's content with the snapshot at ``path``: ``(events, log start)``; ``(0, 0)``
    and an untouched engine when there is no file.

    :raises SnapshotError: the file is damaged, truncated or not a snapshot of a known format.
    """
    if not path.exists():
        return 0, 0
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(bytes(data["header"]).decode())
            if header.get("format") not in (1, FORMAT):
                raise SnapshotError(path, f"not a memory-metering snapshot of format 1 or {FORMAT}")
            states = []
            for i, entry in enumerate(header["meters"]):
                state: dict[str, Any] = {name: data[f"m{i}_{name}"] for name in _ARRAYS}
                hashes, rows = data[f"m{i}_hashes"], data[f"m{i}_rows"]
                if f"m{i}_runLengths" in data:
                    bounds = np.cumsum(data[f"m{i}_runLengths"])[:-1]
                    state["runs"] = list(zip(np.split(hashes, bounds), np.split(rows, bounds), strict=True))
                else:
                    state["hashes"], state["rows"] = hashes, rows
                state["dim_values"], state["texts"] = entry["dimValues"], entry["texts"]
                states.append((from_json(Meter, entry["meter"]), int(entry["seq"]), state))
    except SnapshotError:
        raise
    except Exception as exc:  # a damaged zip fails in many ways (BadZipFile, ValueError, KeyError, ...)
        why = f"it is damaged or not a memory-metering snapshot ({type(exc).__name__}: {exc})"
        raise SnapshotError(path, why) from exc
    with engine.lock:
        engine.meters.clear()
        engine.by_event.clear()
        engine.seq.clear()
        engine.tenant_names = list(header["tenants"])
        engine.tenant_codes = {t: i for i, t in enumerate(engine.tenant_names)}
        engine.customers = {t: bool(v) for t, v in header["customers"].items()}
        engine.dropped = int(header.get("dropped", 0))
        events = 0
        for meter, seq, state in states:
            store = engine._add_store(meter)
            engine.seq[meter.meter_id] = seq
            store.load_state(state)
            events += store.n
        engine._next_seq = int(header["nextSeq"])
    if engine.settings.release_memory:
        release_free_heap()
    return events, int(header.get("logStart", 0))
