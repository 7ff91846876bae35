"""A snapshot-request flood from DEALER sockets, in its own process (issue 19: ~80k requests a second).

Two ways to flood:

- ``--rate 0`` (the default): one socket sends requests as fast as the snapshot socket reads them;
  a blocking send waits while the server does not read, so SIGSTOP/SIGCONT turn it off and on.
- ``--rate R``: ``--sockets`` sockets together try ``R`` requests a second without ever blocking
  (``NOBLOCK``); what ZeroMQ does not take (its queue toward the server is full) is counted as refused.

It prints ``ready`` once connected and, when ``--seconds`` is given, one JSON line at the end:
requests tried, taken by ZeroMQ, refused, and answers received.

    python -m streamer.testing.snapshot_flood tcp://127.0.0.1:PORT --rate 80000 --seconds 4
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import zmq

from streamer.outputs.protocol import SNAPSHOT_REQUEST

_TICK_S = 0.002  # paced mode: requests are tried in bursts this far apart


def _socket(ctx: zmq.Context, address: str, sndhwm: int) -> zmq.Socket:
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.SNDBUF, 4096)  # little in flight: the flood goes as fast as the server reads, no faster
    sock.connect(address)
    return sock


def _drain(sock: zmq.Socket) -> int:
    got = 0
    while sock.poll(0):
        sock.recv_multipart()
        got += 1
    return got


def flood_blocking(sock: zmq.Socket, seconds: float) -> dict:
    """Send as fast as the server reads, for ``seconds`` (0: until killed)."""
    sent = answers = 0
    end = time.monotonic() + seconds if seconds else float("inf")
    while time.monotonic() < end:
        sock.send(SNAPSHOT_REQUEST)
        sent += 1
        answers += _drain(sock)
    return {"tried": sent, "sent": sent, "refused": 0, "answers": answers}


def flood_paced(socks: list[zmq.Socket], rate: float, seconds: float) -> dict:
    """Try ``rate`` requests a second across ``socks``, never blocking, for ``seconds`` (0: until killed)."""
    tried = sent = answers = 0
    t0 = time.monotonic()
    end = t0 + seconds if seconds else float("inf")
    while (now := time.monotonic()) < end:
        due = int((now - t0) * rate) - tried
        for i in range(due):
            try:
                socks[i % len(socks)].send(SNAPSHOT_REQUEST, zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                pass
        tried += due
        answers += sum(_drain(s) for s in socks)
        time.sleep(_TICK_S)
    return {"tried": tried, "sent": sent, "refused": tried - sent, "answers": answers}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("address")
    p.add_argument("--rate", type=float, default=0.0, help="requests tried a second; 0: as fast as the server reads")
    p.add_argument("--seconds", type=float, default=0.0, help="how long; 0: until killed")
    p.add_argument("--sockets", type=int, default=4, help="DEALER sockets in paced mode")
    args = p.parse_args(argv)
    ctx = zmq.Context()
    socks = [_socket(ctx, args.address, 100 if args.rate == 0 else 1000)
             for _ in range(1 if args.rate == 0 else args.sockets)]
    print("ready", flush=True)
    try:
        if args.rate == 0:
            counts = flood_blocking(socks[0], args.seconds)
        else:
            counts = flood_paced(socks, args.rate, args.seconds)
        print(json.dumps({**counts, "seconds": args.seconds}), flush=True)
    finally:
        for sock in socks:
            sock.close(linger=0)
        ctx.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
