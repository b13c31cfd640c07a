"""Dedup per target: the event ids a target accepted recently (``EventsConfig.dedup_window_seconds`` and
``dedup_max_ids``), so a re-put id is accepted but not delivered to it again."""

from __future__ import annotations

from collections import deque

__all__ = ["SeenIds"]


class SeenIds:
    """The event ids a target accepted within the dedup window, at most ``max_ids`` of them: a set for the
    lookups, and the ids in acceptance order, grouped by acceptance time, for forgetting the oldest.

    Grouping by time (one group per accepted batch) keeps per-event work to a set add and a list append;
    the cap is kept to within one batch (``forget`` runs before each batch is accepted).
    """

    __slots__ = ("ids", "groups", "window", "max_ids")

    def __init__(self, window: float, max_ids: int) -> None:
        self.ids: set[str] = set()
        self.groups: deque[tuple[float, list[str]]] = deque()
        self.window, self.max_ids = window, max_ids

    @property
    def enabled(self) -> bool:
        return self.window > 0 and self.max_ids > 0

    def forget(self, now: float) -> None:
        """Forget ids accepted a window or more before ``now`` and, beyond the cap, the oldest."""
        groups, ids = self.groups, self.ids
        while groups and (now - groups[0][0] >= self.window or len(ids) >= self.max_ids):
            ids.difference_update(groups.popleft()[1])

    def group(self, now: float) -> list[str]:
        """The list to append ids accepted at ``now`` to (after adding them to :attr:`ids`)."""
        if not self.groups or self.groups[-1][0] != now:
            self.groups.append((now, []))
        return self.groups[-1][1]
