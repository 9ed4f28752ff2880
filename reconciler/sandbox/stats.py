"""Request counts per route and status, and the most requests a route had in flight at once.

``max_in_flight`` lets a test prove that a client's concurrency limit holds: slow the
endpoint down with a latency fault, run the client, and compare.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


class RequestStats:
    """Counters the app updates on every request; readable in-process or over HTTP."""

    def __init__(self) -> None:
        self.by_status: defaultdict[str, Counter[int]] = defaultdict(Counter)
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()

    def started(self, route: str) -> None:
        self.in_flight[route] += 1
        if self.in_flight[route] > self.max_in_flight[route]:
            self.max_in_flight[route] = self.in_flight[route]

    def finished(self, route: str, status: int) -> None:
        self.in_flight[route] -= 1
        self.by_status[route][status] += 1

    def requests(self, route: str, status: int | None = None) -> int:
        """Finished requests of ``route`` (with ``status``, if given)."""
        counts = self.by_status.get(route, Counter())
        return counts[status] if status is not None else sum(counts.values())

    def reset(self) -> None:
        """Forget counts and maxima; requests still in flight stay counted as such."""
        self.by_status.clear()
        self.max_in_flight = Counter({r: n for r, n in self.in_flight.items() if n})

    def snapshot(self) -> dict[str, Any]:
        routes = sorted(set(self.by_status) | set(self.max_in_flight))
        return {
            "routes": {
                route: {
                    "requests": self.requests(route),
                    "statuses": {
                        str(status): count
                        for status, count in sorted(self.by_status.get(route, Counter()).items())
                    },
                    "in_flight": self.in_flight[route],
                    "max_in_flight": self.max_in_flight[route],
                }
                for route in routes
            },
            "total": sum(sum(c.values()) for c in self.by_status.values()),
        }
