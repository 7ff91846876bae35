"""What a stream is expected to cost a worker, and which worker takes it.

The cost of a stream is what its capture and preprocessing handle: frames a second x pixels a frame.
A generated source says both in its URL (``synthetic://...?fps=25&width=160&height=120``); for a
camera or a network stream the size is not known before it opens, so ``options.fps_hint`` frames a
second of :data:`DEFAULT_SIZE` are assumed.

Placement (:func:`place`) is greedy, largest cost first, each stream to the worker with the least load
so far (the classic LPT rule: within 4/3 of the best balance). The model is the other bound: when
``run_stream.py --bench`` has measured a worker's device (:mod:`streamer.core.precision`), the worker
reports the windows a second its model can take (``capacity``) and the windows a second its streams
ask for (``demand``, measured: windows run plus windows skipped as stale); a stream whose measured
demand does not fit in what a worker has left does not go there. A stream that fits nowhere stays
unplaced: the head says so in its status and places it when a worker joins.

:func:`moves` is ``ctl rebalance``: the fewest moves, each from the most to the least loaded worker,
that even out the load; never run unasked (a moved stream loses its window).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable
from urllib.parse import parse_qsl, urlsplit

from streamer.config import SourceConfig

DEFAULT_SIZE = (1920, 1080)  #: pixels assumed for a camera or network stream (its size is known only once open)
_GENERATED_DEFAULTS = {"fps": 25.0, "width": 160, "height": 120}  # testpattern:// and synthetic:// defaults


def expected_cost(source: SourceConfig) -> float:
    """Frames a second x pixels a frame that this source is expected to deliver."""
    url = source.url
    if url.startswith(("synthetic://", "testpattern://")):
        query = dict(parse_qsl(urlsplit(url).query))
        try:
            fps, width, height = (float(query.get(k, d)) for k, d in _GENERATED_DEFAULTS.items())
        except ValueError:  # the worker refuses the URL when it opens it; here it only weighs
            fps, width, height = _GENERATED_DEFAULTS.values()
        return fps * width * height
    width, height = DEFAULT_SIZE
    return source.options.fps_hint * width * height


@dataclass(frozen=True)
class Item:
    """A stream to place."""

    id: str
    cost: float  #: frames/s x pixels (:func:`expected_cost`)
    demand: float | None = None  #: windows/s it asked its model for, when measured


@dataclass
class Bin:
    """A worker that can take streams."""

    name: str
    load: float = 0.0  #: the cost of the streams it serves
    demand: float = 0.0  #: windows/s its streams ask for (measured)
    capacity: float | None = None  #: windows/s its model can take (--bench), None: not measured
    items: list[str] = field(default_factory=list)

    def fits(self, item: Item) -> bool:
        return self.capacity is None or item.demand is None or self.demand + item.demand <= self.capacity

    def take(self, item: Item) -> None:
        self.load += item.cost
        self.demand += item.demand or 0.0
        self.items.append(item.id)


def place(items: Iterable[Item], bins: list[Bin]) -> dict[str, str | None]:
    """Stream id -> worker name (None: no worker has room), largest cost first to the least loaded worker
    it fits; ``bins`` are updated with what they took."""
    out: dict[str, str | None] = {}
    for item in sorted(items, key=lambda i: (-i.cost, i.id)):
        room = [b for b in bins if b.fits(item)]
        target = min(room, key=lambda b: (b.load, len(b.items), b.name)) if room else None
        if target is not None:
            target.take(item)
        out[item.id] = target.name if target is not None else None
    return out


def moves(bins: list[Bin], costs: dict[str, Item]) -> list[tuple[str, str, str]]:
    """(stream, from, to) moves that even out the load: each takes from the most loaded worker the stream
    that brings it and the least loaded closest to equal; stops when no move lowers the highest load."""
    bins = [Bin(b.name, b.load, b.demand, b.capacity, list(b.items)) for b in bins]
    out: list[tuple[str, str, str]] = []
    while len(bins) > 1:
        high = max(bins, key=lambda b: (b.load, b.name))
        low = min(bins, key=lambda b: (b.load, b.name))
        gap = high.load - low.load
        candidates = [costs[s] for s in high.items if 0 < costs[s].cost < gap and low.fits(costs[s])]
        if not candidates:
            break
        item = min(candidates, key=lambda i: (abs(gap / 2 - i.cost), i.id))
        high.items.remove(item.id)
        high.load -= item.cost
        high.demand -= item.demand or 0.0
        low.take(item)
        out.append((item.id, high.name, low.name))
    return out


__all__ = ["DEFAULT_SIZE", "Item", "Bin", "expected_cost", "place", "moves"]
