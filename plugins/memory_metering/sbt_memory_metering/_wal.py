"""The write-ahead log's files: framed records in numbered segments, group commit, fsync policies.

A segment is ``<stem>.<number>.wal`` (eight digits) beside the snapshot. A record on disk is
``[u32 length][u32 CRC32 of the payload][payload]`` (little-endian), so a record cut short by a power
cut (a torn tail) or garbled fails its length or checksum and is never applied half.

Writers append payloads to an in-memory buffer (under the engine's lock, so the log's order is the
order changes were applied); :meth:`Log.commit` then writes everything buffered with one ``write`` and,
under ``fsync = "batch"``, one ``fdatasync``, for every thread waiting at that moment (group commit: a
thread that finds the write in progress waits for it and usually finds its records already durable).
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from pathlib import Path

import attrs

from sbt_core.errors import ProviderError

__all__ = ["FSYNC_POLICIES", "Buffer", "Log", "LogCorruptError", "Segment", "fsync_dir", "read_segment", "segment_path",
           "segments"]

#: ``batch``: fsync before a hook returns (one fsync per delivered batch, shared by concurrent callers).
#: ``interval``: write before a hook returns, fsync every ``fsync_interval_ms`` in the background.
#: ``off``: write before a hook returns, let the operating system flush when it likes.
FSYNC_POLICIES = ("batch", "interval", "off")

_HEAD = struct.Struct("<II")
#: A record longer than this is garbage (a torn length field), not a record.
MAX_RECORD = 1 << 31
#: What a record is written from: bytes, or memoryviews of arrays (``ndarray.data``).
Buffer = bytes | bytearray | memoryview
_sync = getattr(os, "fdatasync", os.fsync)  # the data and the size are what a reader needs
_IOV_MAX = min(os.sysconf("SC_IOV_MAX"), 1024) if hasattr(os, "sysconf") else 16


class LogCorruptError(Exception):
    """A segment that cannot be replayed: ``path`` and byte ``offset`` of the first bad record."""

    def __init__(self, path: Path, offset: int, why: str) -> None:
        super().__init__(f"{path}: {why} at byte {offset}")
        self.path, self.offset, self.why = path, offset, why


@attrs.frozen
class Segment:
    """A segment file and its number."""

    number: int
    path: Path


def segment_path(snapshot: Path, number: int) -> Path:
    """The file of segment ``number`` of the log beside ``snapshot``."""
    return snapshot.with_name(f"{snapshot.stem}.{number:08d}.wal")


def segments(snapshot: Path) -> list[Segment]:
    """The log's segments beside ``snapshot``, oldest first."""
    found = []
    for path in snapshot.parent.glob(f"{snapshot.stem}.*.wal"):
        number = path.name[len(snapshot.stem) + 1:-4]
        if len(number) == 8 and number.isdigit():
            found.append(Segment(int(number), path))
    return sorted(found, key=lambda s: s.number)


def fsync_dir(path: Path) -> None:
    """Make a directory's entries (a created, renamed or removed file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def frame(*parts: Buffer) -> list[Buffer]:
    """One record as written: length, checksum, then the payload, which is ``parts`` joined (large
    columns are passed as they are and written with ``writev``, never copied)."""
    if len(parts) == 1:
        payload = parts[0]
        return [_HEAD.pack(len(payload), zlib.crc32(payload)), payload]
    crc, length = 0, 0
    for part in parts:
        crc = zlib.crc32(part, crc)
        length += memoryview(part).nbytes
    return [_HEAD.pack(length, crc), *parts]


def _write_all(fd: int, parts: list[Buffer]) -> int:
    """Write every buffer in order (``writev``, resuming after short writes); returns the bytes written."""
    views = [memoryview(p).cast("B") for p in parts]
    total = 0
    while views:
        done = os.writev(fd, views[:_IOV_MAX])
        total += done
        while views and done >= views[0].nbytes:
            done -= views[0].nbytes
            views.pop(0)
        if done:
            views[0] = views[0][done:]
    return total


def read_segment(path: Path) -> tuple[list[tuple[int, memoryview]], int, str | None]:
    """The valid records of a segment (each with its byte offset), the offset where they end, and why
    reading stopped early (None when the file ends exactly after a whole record)."""
    data = memoryview(path.read_bytes())
    records: list[tuple[int, memoryview]] = []
    at, end = 0, len(data)
    while at < end:
        if end - at < _HEAD.size:
            return records, at, "a record header is cut short"
        length, crc = _HEAD.unpack_from(data, at)
        if length > end - at - _HEAD.size:
            return records, at, "a record is cut short"
        payload = data[at + _HEAD.size:at + _HEAD.size + length]
        if zlib.crc32(payload) != crc:
            return records, at, "a record fails its checksum"
        records.append((at, payload))
        at += _HEAD.size + length
    return records, at, None


class Log:
    """The open end of the log: the current segment, its buffer and the fsync policy.

    Thread-safe. :meth:`append` is called under the engine's lock; :meth:`commit` outside it.
    An I/O error makes the log *failed*: every later append or commit raises, because records after a
    failed write could sit behind garbage that start-up would stop at (PostgreSQL stops on a failed
    fsync for the same reason).
    """

    def __init__(self, snapshot: Path, number: int, *, fsync: str, interval_ms: int) -> None:
        self.snapshot = snapshot
        self.policy = fsync
        self.number = number
        self._fd = self._open(number)
        self._buf: list[Buffer] = []
        self._buf_lock = threading.Lock()  # append vs. the writer taking the buffer
        self._io_lock = threading.Lock()  # one writer at a time; also guards rotation
        self.appended = 0  # records appended so far (a sequence number)
        self.written = 0  # records handed to the operating system
        self.synced = 0  # records on stable storage (fsynced)
        self.bytes = os.fstat(self._fd).st_size  # bytes in the current segment
        self.bytes_since_snapshot = self.bytes
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        if fsync == "interval":
            self._syncer = threading.Thread(target=self._sync_every, args=(interval_ms / 1000,),
                                            name="metering-wal-fsync", daemon=True)
            self._syncer.start()

    def _open(self, number: int) -> int:
        path = segment_path(self.snapshot, number)
        created = not path.exists()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        if created:
            fsync_dir(path.parent)  # a fsynced record in a file whose name is lost is lost too
        return fd

    def _check(self) -> None:
        if self.failure is not None:
            raise ProviderError(f"the metering write-ahead log failed ({type(self.failure).__name__}: "
                                f"{self.failure}); no change is accepted until the control plane restarts") \
                from self.failure

    def append(self, *parts: Buffer) -> None:
        """Buffer one record whose payload is ``parts`` joined (written by the next :meth:`commit`).
        The parts must not change until then: the engine hands over arrays it never modifies."""
        self._check()
        record = frame(*parts)
        with self._buf_lock:
            self._buf += record
            self.appended += 1

    def commit(self) -> None:
        """Return once every record appended before the call is written (and fsynced under ``batch``).

        :raises ProviderError: the write or fsync failed, now or earlier (502 over HTTP; the bus retries,
            then dead-letters, so an event that was not logged is never lost).
        """
        target = self.appended
        if (self.synced if self.policy == "batch" else self.written) >= target:
            self._check()
            return
        with self._io_lock:
            self._check()
            if (self.synced if self.policy == "batch" else self.written) >= target:
                return
            self._write(sync=self.policy == "batch")

    def _write(self, *, sync: bool) -> None:
        """Write the buffer (and fsync); the caller holds ``_io_lock``."""
        with self._buf_lock:
            parts, upto = self._buf, self.appended
            self._buf = []
        try:
            if len(parts) <= 64:  # small records (one call's): one plain write of their join
                written = _write_all(self._fd, [b"".join(parts)])
            else:
                written = _write_all(self._fd, parts)
            self.bytes += written
            self.bytes_since_snapshot += written
            self.written = upto
            if sync:
                _sync(self._fd)
                self.synced = upto
        except BaseException as exc:
            self.failure = exc
            self._check()  # raises ProviderError: the caller's change is not acknowledged
            raise

    def _sync_every(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            if self.synced >= self.written:
                continue
            # fsync a duplicate of the descriptor outside the I/O lock, so writers never wait for the
            # disk; it covers everything written before it starts. A rotation meanwhile fsyncs the old
            # segment itself, and the duplicate keeps the file open until this fsync ends.
            with self._io_lock:
                if self.failure is not None:
                    return
                upto, fd = self.written, os.dup(self._fd)
            try:
                _sync(fd)
            except OSError as exc:
                self.failure = exc
                return
            finally:
                os.close(fd)
            with self._io_lock:
                self.synced = max(self.synced, upto)

    def rotate(self) -> int:
        """Write, fsync and close the current segment and start the next; returns the new number.

        Called under the engine's lock by a compaction, so the records before the switch are exactly
        the changes the snapshot about to be taken holds. The old segment is fsynced whatever the
        policy, so a later segment never follows a torn one.
        """
        with self._io_lock:
            self._check()
            self._write(sync=True)
            os.close(self._fd)
            self.number += 1
            self._fd = self._open(self.number)
            self.bytes = 0
            self.bytes_since_snapshot = 0
            return self.number

    def close(self) -> None:
        """Write and fsync what is buffered, stop the fsync thread, close the segment."""
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join()
        with self._io_lock:
            try:
                if self.failure is None:
                    self._write(sync=True)
            finally:
                os.close(self._fd)
