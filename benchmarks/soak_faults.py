"""The soak's faults (benchmarks/soak.py): each one run to its end, then judged recovered or not.

| kind       | what                                                                  | recovered when                                   |
|------------|-----------------------------------------------------------------------|--------------------------------------------------|
| kill       | one camera's RTSP server SIGKILLed, restarted on its port 2-6 s later  | that camera publishes again within 30 s          |
| freeze     | one camera's RTSP server SIGSTOPped for 3-8 s, then continued          | that camera publishes again within 30 s          |
| slowsub    | a second subscriber stops reading for 10-20 s                          | the main subscriber saw no seq gap meanwhile     |
| sub10mb    | a raw ZMTP peer sends one 10 MB SUBSCRIBE frame to the publisher port  | hung up on; RSS +<=20 MB; no gap; all publish    |
| sub5x1mb   | five 1 MB SUBSCRIBE frames, one connection each                        | the same                                         |
| ctl10mb    | a raw DEALER sends one 10 MB request frame to the control port         | hung up on; RSS +<=20 MB; no gap; all publish    |
| snapframes | a raw DEALER sends a snapshot request of 25,000 frames x 4 KB          | refused; RSS +<=20 MB; a fair snapshot answered  |
| snapflood  | 4 DEALERs try ~80k snapshot requests/s for 4 s                         | a fair snapshot answered during it; RSS +<=20 MB |
| handshake  | 200 TCP connections each to the publisher, snapshot and control ports,  | garbage hung up on; RSS +<=20 MB; no gap; open  |
|            | held 4 s: half greet as ZMTP and go silent, half send garbage          | files back to within 8 of before within 10 s    |
| vanish     | the ``vanish`` source's file is deleted (once a run)                   | that stream fails or ends, naming the file       |
| sighup     | SIGHUP to the pipeline: re-read the (unchanged) config                 | no gap; all publish; the log says it reloaded    |

Every fault also needs every stream that published in the 5 s before it to publish again after it
(within 30 s). A fault's *window* (where the other streams' results and latency are measured) runs
from its start to its end, plus an aftermath of :data:`AFTERMATH_S` for the socket attacks, whose
effects (memory, delayed results) came after the attack in the chaos run (issue 19).
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from streamer.outputs.snapshot import request_snapshot
from streamer.testing import zmtp
from streamer.testing.processes import ENV, ROOT, StreamProcess, wait_until
from streamer.testing.rtsp import RtspServer

RECOVERY_S = 30.0  #: a stream must publish again within this long after a fault
AFTERMATH_S = 5.0  #: socket attacks: seconds after the attack that still belong to its window
RSS_GROWTH_MB = 20.0  #: issue 19's bound on what a memory attack may leave behind
FLOOD_RATE, FLOOD_S = 80_000, 4.0  #: snapshot flood: requests tried a second, for this long
HANDSHAKES, HOLD_S = 200, 4.0  #: handshake flood: connections per socket, held this long
FDS_SLACK = 8  #: open files a fault may leave behind (ZeroMQ closes what it hung up on a little later)
MEMORY_KINDS = ("sub10mb", "sub5x1mb", "ctl10mb", "snapframes", "snapflood", "handshake")  #: the socket attacks
CAMERA_KINDS = ("kill", "freeze")
KINDS = CAMERA_KINDS + ("slowsub", "sighup") + MEMORY_KINDS
ONCE = ("vanish",)  #: kinds that come up in the first round only (they end their stream for good)


@dataclass
class Target:
    """What the faults act on and what they read: the cameras' servers, the pipeline's sockets, the
    main subscriber (``obs``: results, gaps) and the RSS sampler (``rss``)."""

    servers: dict[str, RtspServer]
    publish: str
    snapshot: str
    control: str
    pipeline: StreamProcess
    obs: object  # soak.Observer
    rss: object  # soak.Sampler
    vanish: Path | None = None  #: the ``vanish`` source's file
    gone: set[str] = field(default_factory=set)  #: streams a fault ended for good (not expected back)


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def _camera(rec: dict, rng: random.Random, target: Target) -> RtspServer:
    rec["stream"] = rng.choice(sorted(target.servers))
    return target.servers[rec["stream"]]


def _kill(rec: dict, rng: random.Random, target: Target) -> None:
    server = _camera(rec, rng, target)
    server.kill()
    time.sleep(rng.uniform(2, 6))
    server.start()


def _freeze(rec: dict, rng: random.Random, target: Target) -> None:
    server = _camera(rec, rng, target)
    server.freeze()
    time.sleep(rng.uniform(3, 8))
    server.resume()


def _slowsub(rec: dict, rng: random.Random, target: Target) -> None:
    pause = rng.uniform(10, 20)
    proc = subprocess.Popen([sys.executable, "-m", "streamer.testing.frozen_subscriber", target.publish,
                             "--pause", f"{pause:.1f}", "--drain", "0.5"],
                            cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc.wait(pause + 60)
    rec["stream"] = "(subscriber)"


def _subscriptions(sizes: tuple[int, ...]) -> Callable[[dict, random.Random, Target], None]:
    def attack(rec: dict, rng: random.Random, target: Target) -> None:
        hung_up = zmtp.oversized_subscriptions(port_of(target.publish), sizes)
        rec["refused"] = all(hung_up)
        rec["detail"] = f"hung up on {sum(hung_up)}/{len(hung_up)} frames"
    return attack


def _snapframes(rec: dict, rng: random.Random, target: Target) -> None:
    outcome = zmtp.many_frame_request(port_of(target.snapshot))
    rec["refused"] = outcome.refused or not outcome.sent_all  # refused with a reason, or hung up on
    rec["detail"] = "refused with a reason" if outcome.refused else (
        "hung up mid-request" if not outcome.sent_all else "answered")


def _snapflood(rec: dict, rng: random.Random, target: Target) -> None:
    flood = subprocess.Popen([sys.executable, "-m", "streamer.testing.snapshot_flood", target.snapshot,
                              "--rate", str(FLOOD_RATE), "--seconds", str(FLOOD_S)],
                             cwd=ROOT, env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        flood.stdout.readline()  # "ready"
        time.sleep(FLOOD_S / 2)
        t0 = time.monotonic()
        fair = request_snapshot(target.snapshot, timeout=FLOOD_S)  # another client, in the middle of the flood
        rec["fair_s"] = time.monotonic() - t0 if fair is not None else None
        counts = json.loads(flood.stdout.readline() or "{}")
    finally:
        flood.kill()
        flood.wait(10)
    rec["refused"] = fair is not None
    rec["detail"] = (f"tried {counts.get('tried', 0) / FLOOD_S:,.0f}/s, ZeroMQ took {counts.get('sent', 0):,}, "
                     f"answered {counts.get('answers', 0)}; a fair request "
                     + (f"answered in {rec['fair_s'] * 1000:.0f} ms" if fair is not None else "unanswered"))


def _handshake(rec: dict, rng: random.Random, target: Target) -> None:
    names = ("publisher", "snapshot", "control")
    floods = zmtp.handshake_flood([port_of(a) for a in (target.publish, target.snapshot, target.control)],
                                  HANDSHAKES, HOLD_S)
    rec["fds_peak"] = target.rss.peak(rec["start"], time.monotonic(), field="fds")
    rec["refused"] = all(f.hung_up >= f.opened // 2 for f in floods)  # the garbage half at least
    rec["detail"] = ", ".join(f"{name}: {f.opened} accepted, {f.hung_up} hung up on" for name, f in zip(names, floods))


def _ctl10mb(rec: dict, rng: random.Random, target: Target) -> None:
    rec["refused"] = zmtp.oversized_request(port_of(target.control), 10_000_000)
    rec["detail"] = "hung up on" if rec["refused"] else "not hung up on"


def _sighup(rec: dict, rng: random.Random, target: Target) -> None:
    rec["log_at"] = len(target.pipeline.stderr())
    target.pipeline.proc.send_signal(signal.SIGHUP)


def _vanish(rec: dict, rng: random.Random, target: Target) -> None:
    rec["stream"] = "vanish"
    target.gone.add(rec["stream"])
    target.vanish.unlink()


INJECTORS: dict[str, Callable[[dict, random.Random, Target], None]] = {
    "kill": _kill, "freeze": _freeze, "slowsub": _slowsub,
    "sub10mb": _subscriptions((10_000_000,)), "sub5x1mb": _subscriptions((1_000_000,) * 5),
    "snapframes": _snapframes, "snapflood": _snapflood, "handshake": _handshake, "vanish": _vanish,
    "ctl10mb": _ctl10mb, "sighup": _sighup,
}


def schedule(rng: random.Random, kinds: tuple[str, ...] = KINDS + ONCE, cameras: bool = True):
    """Fault kinds in shuffled rounds: every kind once per round, so each comes up about equally often
    (the :data:`ONCE` kinds in the first round only; the camera kinds only where there are cameras)."""
    kinds = tuple(k for k in kinds if cameras or k not in CAMERA_KINDS)
    first = True
    while True:
        round_ = [k for k in kinds if first or k not in ONCE]
        rng.shuffle(round_)
        yield from round_
        first = False


def inject(kind: str, rng: random.Random, target: Target) -> dict:
    """Run one fault to its end (blocking), wait out its window, and judge it; returns its record."""
    start = time.monotonic()
    rec: dict = {"kind": kind, "start": start, "stream": None,
                 "before": target.obs.publishing(start - 5.0, start) - target.gone, "gaps_before": target.obs.gaps}
    INJECTORS[kind](rec, rng, target)
    rec["end"] = time.monotonic()
    rec["window_end"] = rec["end"] + (AFTERMATH_S if kind in MEMORY_KINDS else 0.0)
    time.sleep(max(0.0, rec["window_end"] - time.monotonic()))
    judge(rec, target)
    return rec


def _memory_after(rec: dict, target: Target) -> None:
    """RSS and open files before, the peak in the window, and after (waiting up to 10 s for freed
    memory and closed connections to go back)."""
    rss = target.rss
    rec["rss_before"], rec["fds_before"] = rss.before(rec["start"]), rss.before(rec["start"], field="fds")
    rec["rss_peak"] = rss.peak(rec["start"], rec["window_end"])
    deadline = time.monotonic() + (10.0 if rec["kind"] in MEMORY_KINDS else 0.0)
    while True:
        rec["rss_after"], rec["fds_after"] = rss.latest(), rss.latest(field="fds")
        if ((rec["rss_after"] - rec["rss_before"]) / 1024 <= RSS_GROWTH_MB
                and rec["fds_after"] - rec["fds_before"] <= FDS_SLACK) or time.monotonic() >= deadline:
            return
        time.sleep(0.5)


def judge(rec: dict, target: Target) -> None:
    """Set ``recovered`` (and ``recovery_s``, ``rss_*``, ``gaps``, and ``problems``: what was not as it
    should be) on a finished fault's record."""
    _memory_after(rec, target)
    obs, kind = target.obs, rec["kind"]
    if kind in CAMERA_KINDS:
        rec["before"] = rec["before"] | {rec["stream"]}
    if kind == "vanish":
        rec["before"] = rec["before"] - {rec["stream"]}
    back = obs.wait_published(rec["before"], rec["window_end"], rec["window_end"] + RECOVERY_S)
    if kind in CAMERA_KINDS and rec["stream"] in back:
        rec["recovery_s"] = back[rec["stream"]] - rec["end"]
    rec["gaps"] = obs.gaps - rec["gaps_before"]
    problems = [f"{s} silent" for s in sorted(rec["before"] - set(back))]
    if kind == "sighup" and not _reloaded(rec, target):
        problems.append("no reload in the log")
    if kind in ("slowsub", "sighup") or kind in MEMORY_KINDS:
        problems += [f"{rec['gaps']} seq gaps"] if rec["gaps"] else []
    if kind in MEMORY_KINDS:
        rec["growth_mb"] = (rec["rss_after"] - rec["rss_before"]) / 1024
        problems += [] if rec["refused"] else ["not refused"]
        problems += [f"RSS {rec['growth_mb']:+.1f} MB"] if rec["growth_mb"] > RSS_GROWTH_MB else []
    if kind == "handshake" and rec["fds_after"] - rec["fds_before"] > FDS_SLACK:
        problems.append(f"{rec['fds_after'] - rec['fds_before']} files left open")
    if kind == "vanish" and not _vanish_seen(rec, target):
        problems.append("the vanished file's stream never said so")
    if kind == "snapframes" and request_snapshot(target.snapshot, timeout=5.0) is None:
        problems.append("a fair snapshot request after it went unanswered")
    rec["problems"], rec["recovered"] = problems, not problems


def _vanish_seen(rec: dict, target: Target) -> bool:
    """Whether the vanished file's stream said so within :data:`RECOVERY_S`: failed or ended, its reason
    naming the file."""
    def said() -> dict | None:
        status = target.obs.status.get(rec["stream"]) or {}
        if status.get("state") in ("failed", "ended") and target.vanish.name in (status.get("reason") or ""):
            return status
        return None

    status = wait_until(said, max(0.0, rec["end"] + RECOVERY_S - time.monotonic()))
    if status is None:
        rec["detail"] = "not reported"
        return False
    rec["detail"] = f"{status['state']}: {status['reason']}"
    rec["recovery_s"] = time.monotonic() - rec["end"]
    return True


def _reloaded(rec: dict, target: Target) -> bool:
    """Whether the pipeline's log, after the SIGHUP, says what the reload did (waits up to 10 s)."""
    def said() -> str | None:
        after = target.pipeline.stderr()[rec["log_at"]:]
        return next((line for line in after.splitlines() if "reload" in line.lower()), None)

    line = wait_until(said, 10.0)
    rec["detail"] = line.split(": ", 1)[-1][:160] if line else "nothing logged"
    return line is not None
