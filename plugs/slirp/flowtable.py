"""A table of NAT flows with idle timeouts and a size limit, pure (used by udp.py, icmp.py).

Flows of one idle timeout are kept in one OrderedDict in least-recently-used order (`now`
only grows), so the next deadline, expiry and the eviction of the least recently used flow
cost O(number of timeouts), not O(flows). A flow is any object with a `last_used` float
attribute, hashed by identity.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Any


class FlowTable:
    def __init__(self, max_flows: int, timeouts: tuple[float, ...]):
        if max_flows < 1:
            raise ValueError("max_flows must be at least 1")
        self.max_flows = max_flows
        self.timeouts = timeouts
        self._by_key: dict[Hashable, Any] = {}
        self._where: dict[int, tuple[Hashable, int]] = {}     # id(flow) -> (key, class)
        self._lru: list[OrderedDict[int, Any]] = [OrderedDict() for _ in timeouts]

    def __len__(self) -> int:
        return len(self._by_key)

    def __iter__(self):
        return iter(list(self._by_key.values()))

    def get(self, key: Hashable) -> Any:
        return self._by_key.get(key)

    def full(self) -> bool:
        return len(self._by_key) >= self.max_flows

    def add(self, key: Hashable, flow: Any, cls: int) -> None:
        if key in self._by_key:
            raise KeyError(key)
        self._by_key[key] = flow
        self._where[id(flow)] = (key, cls)
        self._lru[cls][id(flow)] = flow

    def touch(self, flow: Any, now: float) -> None:
        where = self._where.get(id(flow))
        flow.last_used = now
        if where is not None:
            self._lru[where[1]].move_to_end(id(flow))

    def remove(self, flow: Any) -> bool:
        """Takes the flow out; False if it was not in the table."""
        where = self._where.pop(id(flow), None)
        if where is None:
            return False
        del self._by_key[where[0]]
        del self._lru[where[1]][id(flow)]
        return True

    def key_of(self, flow: Any) -> Hashable:
        return self._where[id(flow)][0]

    def __contains__(self, flow: Any) -> bool:
        return id(flow) in self._where

    def least_recently_used(self) -> Any:
        oldest = None
        for lru in self._lru:
            if lru:
                flow = next(iter(lru.values()))
                if oldest is None or flow.last_used < oldest.last_used:
                    oldest = flow
        return oldest

    def expire(self, now: float) -> list[Any]:
        """Removes and returns the flows idle for their timeout or longer."""
        gone = []
        for lru, timeout in zip(self._lru, self.timeouts):
            while lru:
                flow = next(iter(lru.values()))
                if flow.last_used + timeout > now:
                    break
                self.remove(flow)
                gone.append(flow)
        return gone

    def next_deadline(self) -> float | None:
        deadlines = [next(iter(lru.values())).last_used + timeout
                     for lru, timeout in zip(self._lru, self.timeouts) if lru]
        return min(deadlines) if deadlines else None


class Flows:
    """What udp.py's and icmp.py's tables share around their FlowTable: its size, its
    flows, and the flows evicted to make room, reported once."""

    def __init__(self, max_flows: int, timeouts: tuple[float, ...]):
        self._table = FlowTable(max_flows, timeouts)
        self._evicted: list = []

    @property
    def max_flows(self) -> int:
        return self._table.max_flows

    def __len__(self) -> int:
        return len(self._table)

    def __iter__(self):
        return iter(self._table)

    def evicted(self) -> list:
        """The flows evicted to make room since the last call (or expire()); emptied."""
        gone, self._evicted = self._evicted, []
        return gone

    def next_deadline(self) -> float | None:
        """When expire() has something to do next (now if evictions are pending)."""
        deadline = self._table.next_deadline()
        if self._evicted:
            oldest = min(f.last_used for f in self._evicted)
            deadline = oldest if deadline is None else min(deadline, oldest)
        return deadline
