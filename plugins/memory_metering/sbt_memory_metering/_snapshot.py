"""Snapshot of the engine to one ``.npz`` file (NumPy arrays + a JSON header), and back.

No pickle: the file is read with ``allow_pickle=False``, so a tampered snapshot cannot run code.
Written to a temporary file then renamed, so a crash mid-write leaves the previous snapshot whole.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from sbt_core.models import Meter, from_json, to_json

from ._engine import Engine
from ._memory import release_free_heap

__all__ = ["FORMAT", "load", "save"]

FORMAT = 1
_ARRAYS = ("ts", "val", "ser", "flags", "hashes", "rows", "series_tenant", "series_dims")


def save(engine: Engine, path: Path) -> int:
    """Write every meter, tenant, customer and event to ``path``; returns the number of events."""
    with engine.lock:
        arrays: dict[str, np.ndarray] = {}
        meters = []
        events = 0
        for i, store in enumerate(engine.meters.values()):
            state = store.state()
            for name in _ARRAYS:
                arrays[f"m{i}_{name}"] = state[name]
            meters.append({"meter": to_json(store.meter), "seq": engine.seq[store.meter.meter_id],
                           "dimValues": state["dim_values"], "texts": state["texts"]})
            events += store.n
        header = {"format": FORMAT, "tenants": engine.tenant_names, "customers": engine.customers,
                  "nextSeq": engine._next_seq, "dropped": engine.dropped, "meters": meters}
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds as savez's flags
        os.replace(tmp, path)
        return events


def load(engine: Engine, path: Path) -> int:
    """Replace the engine's content with the snapshot at ``path``; returns the number of events
    (0 when there is no file).

    :raises ValueError: the file is not a snapshot of this format.
    """
    if not path.exists():
        return 0
    with np.load(path, allow_pickle=False) as data:
        header = json.loads(bytes(data["header"]).decode())
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is not a memory-metering snapshot of format {FORMAT}")
        with engine.lock:
            engine.meters.clear()
            engine.by_event.clear()
            engine.seq.clear()
            engine.tenant_names = list(header["tenants"])
            engine.tenant_codes = {t: i for i, t in enumerate(engine.tenant_names)}
            engine.customers = {t: bool(v) for t, v in header["customers"].items()}
            engine.dropped = int(header.get("dropped", 0))
            events = 0
            for i, entry in enumerate(header["meters"]):
                meter = from_json(Meter, entry["meter"])
                store = engine._add_store(meter)
                engine.seq[meter.meter_id] = int(entry["seq"])
                state = {name: data[f"m{i}_{name}"] for name in _ARRAYS}
                state["dim_values"], state["texts"] = entry["dimValues"], entry["texts"]
                store.load_state(state)
                events += store.n
            engine._next_seq = int(header["nextSeq"])
    if engine.settings.release_memory:
        release_free_heap()
    return events
