"""Durable storage of the engine: snapshot + write-ahead log, recovery and background compaction.

Files (beside the snapshot, ``<state_dir>/memory/`` by default):
- ``metering.npz``: the snapshot (:mod:`._snapshot`); its header names the first log segment it does
  not hold (``logStart``).
- ``metering.<n>.wal``: log segments (:mod:`._wal`), replayed in order from ``logStart``.
- ``metering.lock``: held (``flock``) while a provider has the files open, so a second one refuses to.

Compaction: under the engine's lock the log switches to a new segment and the engine's content is
captured (milliseconds); then, without the lock, the snapshot is written, fsynced and renamed over the
old one, and only then are the segments it holds removed. A crash at any point leaves either the old
snapshot with every segment after it, or the new one with the segments after it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from pathlib import Path

import attrs

from . import _snapshot
from ._engine import Engine
from ._journal import Journal, replay_segment
from ._recorder import Recorder
from ._wal import Log, LogCorruptError, fsync_dir, read_segment, segment_path, segments
from .settings import MemoryMeteringSettings

__all__ = ["Durable", "InUseError", "Recovery"]


@attrs.frozen
class Recovery:
    """What start-up found: events in the snapshot, records replayed from the log, bytes of a torn tail
    dropped, and how long it took (seconds)."""

    snapshot_events: int
    records: int
    torn_bytes: int
    seconds: float


class Durable:
    """Owns the log and the snapshot of one engine: :meth:`open` recovers, :meth:`close` compacts."""

    def __init__(self, engine: Engine, settings: MemoryMeteringSettings, snapshot: Path,
                 logger: logging.Logger) -> None:
        self.engine = engine
        self.settings = settings
        self.snapshot = snapshot
        self.logger = logger
        self.log: Log | None = None
        self._compacting = threading.Lock()
        self._stop = threading.Event()
        self._compactor: threading.Thread | None = None
        self._lock_fd: int | None = None

    def open(self) -> Recovery:
        """Load the snapshot, replay the log after it, and start logging.

        A torn last record of the last segment (a crash mid-write) is cut off and reported; anything
        else that does not read back is an error naming the file, and nothing is started.

        :raises InUseError: another process (or provider) has these files open.
        :raises _snapshot.SnapshotError: the snapshot is damaged.
        :raises LogCorruptError: a segment other than the last is damaged, one is missing, or a record
            does not apply.
        """
        started = time.perf_counter()
        self.snapshot.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock(self.snapshot.with_name(self.snapshot.stem + ".lock"))
        try:
            return self._recover(started)
        except BaseException:
            self._unlock()
            raise

    def _recover(self, started: float) -> Recovery:
        self.snapshot.with_name(self.snapshot.name + ".tmp").unlink(missing_ok=True)
        events, log_start = _snapshot.load(self.engine, self.snapshot)
        first = max(log_start, 1)
        found = segments(self.snapshot)
        for old in [s for s in found if s.number < first]:  # held by the snapshot (a compaction cut short)
            old.path.unlink()
        found = [s for s in found if s.number >= first]
        for expected, seg in enumerate(found, start=first):
            if seg.number != expected:
                raise LogCorruptError(segment_path(self.snapshot, expected), 0,
                                      f"log segment missing (the snapshot holds the log up to segment {first})")
        records = torn = 0
        for i, seg in enumerate(found):
            frames, end, why = read_segment(seg.path)
            if why is not None:
                if i != len(found) - 1:
                    raise LogCorruptError(seg.path, end, why)
                torn = seg.path.stat().st_size - end
                self.logger.warning("metering log %s: dropped a torn last record (%d bytes at byte %d: %s); "
                                    "it was never acknowledged", seg.path, torn, end, why)
                os.truncate(seg.path, end)
            records += replay_segment(self.engine, seg.path, frames)
        if torn:
            fsync_dir(self.snapshot.parent)
        number = found[-1].number if found else first
        self.log = Log(self.snapshot, number, fsync=self.settings.fsync, interval_ms=self.settings.fsync_interval_ms)
        self.engine.recorder = Journal(self.engine, self.log)
        if self.settings.compact_log_bytes > 0:
            self._compactor = threading.Thread(target=self._compact_when_due, name="metering-compactor",
                                               daemon=True)
            self._compactor.start()
        return Recovery(events, records, torn, time.perf_counter() - started)

    def compact(self) -> int:
        """Write a snapshot of everything now and drop the log it holds; returns the number of events."""
        assert self.log is not None, "open() first"
        with self._compacting:
            with self.engine.lock:
                number = self.log.rotate()
                captured = _snapshot.capture(self.engine)
            _snapshot.write(captured, self.snapshot, log_start=number)
            self._drop_segments_before(number)
            return captured.events

    def replace(self, path: Path) -> int:
        """Load the snapshot at ``path`` in place of everything, durably; returns the number of events.
        Holds the engine's lock throughout: no change may be logged against the state being replaced."""
        assert self.log is not None, "open() first"
        with self._compacting, self.engine.lock:
            events, _ = _snapshot.load(self.engine, path)
            number = self.log.rotate()
            _snapshot.write(_snapshot.capture(self.engine), self.snapshot, log_start=number)
            assert isinstance(self.engine.recorder, Journal)
            self.engine.recorder.mark_all_logged()
            self._drop_segments_before(number)
            return events

    def _drop_segments_before(self, number: int) -> None:
        for old in segments(self.snapshot):
            if old.number < number:
                old.path.unlink()
        fsync_dir(self.snapshot.parent)

    def _compact_when_due(self) -> None:
        while not self._stop.wait(0.5):
            log = self.log
            if log is None or log.failure is not None or log.bytes_since_snapshot < self.settings.compact_log_bytes:
                continue
            try:
                events = self.compact()
                self.logger.info("metering log compacted into %s (%d events)", self.snapshot, events)
            except Exception:  # the log is intact; the next round tries again
                self.logger.exception("metering log compaction into %s failed", self.snapshot)

    def close(self, *, compact: bool = True) -> None:
        """Stop compacting, write a last snapshot (so the next start-up replays nothing), close the log."""
        self._stop.set()
        if self._compactor is not None:
            self._compactor.join()
        if self.log is None:
            return
        try:
            if compact and self.log.failure is None:
                self.compact()
        finally:
            self.engine.recorder = Recorder()
            try:
                self.log.close()
            finally:
                self.log = None
                self._unlock()

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None


class InUseError(Exception):
    """Another process or provider has the log open: two writers would interleave their records."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is locked by another process using the same metering files")
        self.path = path


def _lock(path: Path) -> int:
    """An exclusive ``flock`` on ``path``, held until its descriptor is closed (the kernel drops it when
    the process dies, kill -9 included). :raises InUseError: someone holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise InUseError(path) from None
    return fd

