"""Console pages as the server sees them, without a browser: for ``benchmarks/bench_console.py``.

Each "page" does what the console's page does on the network (streamer/ops/console/static/app.js):
one Server-Sent Events stream (``/api/updates``) and, for every stream's tile, a preview fetched
again 200 ms after the last one loaded. It renders nothing, so it stands in for operators watching
from their own machines: what the pipeline's machine pays for pages is the server side only.

    python -m benchmarks.page_client URL --pages 3 --seconds 16 --settle 4

Prints one JSON line at the end: updates and previews received after ``--settle``, and each tile
update's delay from ``published_ts`` to its arrival here (seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

PREVIEW_PERIOD_S = 0.2  # the page's period with up to 16 tiles


async def page(session, url: str, until: float, settle_at: float, out: dict) -> None:
    streams: set[str] = set()
    previews: dict[str, asyncio.Task] = {}
    shown: dict[str, float] = {}  # stream -> published_ts of the result its tile shows (a status repeats it)

    async def preview(stream: str) -> None:
        while time.time() < until:
            t0 = time.monotonic()
            async with session.get(f"{url}/api/streams/{stream}/preview.jpg") as response:
                await response.read()
            if time.time() >= settle_at:
                out["previews"] += 1
            await asyncio.sleep(max(0.0, PREVIEW_PERIOD_S - (time.monotonic() - t0)))

    async with session.get(f"{url}/api/updates", timeout=None) as response:
        kind = None
        async for raw in response.content:
            line = raw.decode("utf-8").rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
                arrived = time.time()
                tiles = data["streams"] if kind == "snapshot" else [data] if kind == "tile" else []
                for tile in tiles:
                    stream = tile["stream"]
                    if stream not in streams:
                        streams.add(stream)
                        previews[stream] = asyncio.create_task(preview(stream))
                published = data.get("published_ts") if kind == "tile" else None
                if published and shown.get(data["stream"]) != published:  # a new result, as the page counts
                    shown[data["stream"]] = published
                    if arrived >= settle_at:
                        out["updates"] += 1
                        out["latencies"].append(arrived - published)
            if time.time() >= until:
                break
    for task in previews.values():
        task.cancel()
    await asyncio.gather(*previews.values(), return_exceptions=True)


async def main_async(url: str, pages: int, seconds: float, settle_s: float) -> dict:
    import aiohttp

    out = {"updates": 0, "previews": 0, "latencies": []}
    start = time.time()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(page(session, url, start + seconds, start + settle_s, out) for _ in range(pages)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("url")
    p.add_argument("--pages", type=int, default=3)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--settle", type=float, default=0.0, help="what arrives before this is not counted")
    args = p.parse_args(argv)
    try:  # the stand-in for other machines takes only CPU time nothing else wants
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        pass
    print(json.dumps(asyncio.run(main_async(args.url.rstrip("/"), args.pages, args.seconds, args.settle))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
