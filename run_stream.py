#!/usr/bin/env python
"""Streaming action recognition: video sources -> TimeSformer -> ZeroMQ results.

    python run_stream.py                                  # configs/default.yaml
    python run_stream.py --source clip.mp4 --mode file --max-windows 10
    python run_stream.py --config configs/hf/timesformer-base-k400.yaml --source rtsp://cam/stream

Exit status: 0 on a clean stop (SIGINT/SIGTERM, end of files, run limit), 1 on a runtime error,
2 on a usage or configuration error.
"""

from __future__ import annotations

import os

from streamer.sources.cvenv import prepare_opencv_environment

# The CLI owns the process: OpenCV reads these only before cv2 is first imported.
prepare_opencv_environment()

import argparse  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from model.errors import ConfigError, RecognizerError  # noqa: E402
from streamer.redact import redact  # noqa: E402

log = logging.getLogger("run_stream")

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_stream.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help=f"YAML config (default: {DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parents[1])})")
    p.add_argument("--source", action="append", metavar="[ID=]URL",
                   help="video source: camera index, /dev/videoN, rtsp://, http(s)://, tcp://, file, "
                        "testpattern://, synthetic://; repeat for several; replaces the config's sources")
    p.add_argument("--model", help="checkpoint: folder, .pyth/.pth file, hub id, or built-in name")
    p.add_argument("--precision", choices=["auto", "int8", "fp16", "bf16", "fp32", "int8-x86", "int8-bnb", "int8-ao",
                                            "fp8"],
                   help="inference precision (README: the precision table); int8: the device's fast 8-bit path")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--publish", metavar="ADDRESS", help="ZeroMQ address to bind, e.g. tcp://127.0.0.1:5555 or ipc:///tmp/x")
    p.add_argument("--mode", choices=["live", "file"], help="live: only fresh windows; file: every window, as fast as possible")
    p.add_argument("--max-windows", type=int, metavar="N", help="stop after N results")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this many seconds")
    p.add_argument("--wait-subscribers", type=int, metavar="N",
                   help="hold capture until N subscribers joined (so a file-mode run loses no result)")
    p.add_argument("--views", choices=["auto", "single", "symmetric"],
                   help="average over the checkpoint's declared mirror/transpose views (auto) or not (single)")
    p.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (0: torch default)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="logging level")
    p.add_argument("--status-line", choices=["auto", "on", "off"], help="live per-stream status line")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics (turns metrics on)")
    p.add_argument("--annotate", metavar="OUT.mp4",
                   help="write the video with the top action, its score and the stream state drawn on it")
    p.add_argument("--show", action="store_true", default=None,
                   help="show the annotated video in a window (needs a display)")
    p.add_argument("--snapshot", metavar="ADDRESS",
                   help="bind a snapshot socket for late joiners, e.g. tcp://127.0.0.1:5556")
    p.add_argument("--no-events", dest="events", action="store_false", default=None,
                   help="do not publish action events")
    p.add_argument("--bench", action="store_true",
                   help="measure each precision on this device at the configured batch sizes, print a "
                        "recommendation and cache it for precision: auto; then exit")
    p.add_argument("--bench-batches", metavar="B,B,...",
                   help="--bench batch sizes (default: 1 and batching.max_batch)")
    p.add_argument("--bench-repeats", type=int, default=10, metavar="N", help="--bench timed runs per row")
    p.add_argument("--bench-source", metavar="VIDEO",
                   help="--bench: a video (file or URL) whose first windows are the clips top-1 agreement is "
                        "measured on (default: the motion-demo's held-out video for motion-demo, else synthetic)")
    return p


def overrides_from_args(args: argparse.Namespace) -> dict:
    """Flag values as a config dict (only flags that were given)."""
    from streamer.configfile import source_from_flag

    out: dict = {}

    def put(section: str, key: str, value) -> None:
        if value is not None:
            out.setdefault(section, {})[key] = value

    if args.source:
        out["sources"] = [source_from_flag(text, i) for i, text in enumerate(args.source)]
    put("model", "source", args.model)
    put("model", "precision", args.precision)
    put("model", "views", args.views)
    put("model", "device", args.device)
    put("model", "threads", args.threads)
    put("publisher", "address", args.publish)
    put("publisher", "wait_subscribers", args.wait_subscribers)
    put("run", "max_windows", args.max_windows)
    put("run", "duration_s", args.duration)
    put("logging", "level", args.log_level)
    put("logging", "status_line", args.status_line)
    put("metrics", "port", args.metrics_port)
    put("metrics", "enabled", True if args.metrics_port is not None else None)
    put("annotate", "path", args.annotate)
    put("annotate", "window", args.show)
    put("snapshot", "address", args.snapshot)
    put("events", "enabled", args.events)
    return out


def load_app_config(args: argparse.Namespace):
    from streamer.configfile import build_config, load_yaml, merge

    data = load_yaml(args.config if args.config is not None else DEFAULT_CONFIG)
    return build_config(merge(data, overrides_from_args(args)))


def setup_logging(level: str) -> None:
    """Log to stderr; every line goes through the credential redactor (S6), tracebacks included."""
    from streamer.redact import RedactingFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])


class _StoppedWhileStarting(BaseException):
    """Raised by the signal handler while start-up imports run, so they need not finish first (R19)."""


def main(argv: list[str] | None = None) -> int:
    stop = threading.Event()
    starting = threading.Event()
    starting.set()

    def on_signal(signum, frame) -> None:
        stop.set()
        if starting.is_set():
            raise _StoppedWhileStarting

    previous = {}
    if threading.current_thread() is threading.main_thread():
        # first thing: SIGINT/SIGTERM during start-up (config, imports) is a clean stop too (R19)
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
    try:
        return _run(argv, stop, starting)
    except _StoppedWhileStarting:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(argv: list[str] | None, stop: threading.Event, starting: threading.Event) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_app_config(args)
    except ConfigError as exc:
        return _error(exc)
    setup_logging(config.logging.level)

    from streamer.pipeline import Pipeline, tune_interpreter

    tune_interpreter()
    import torch  # noqa: F401  the slowest import (~1.5 s), done while a signal still aborts start-up

    starting.clear()  # from here on a signal only sets ``stop``; the pipeline shuts down in order
    if args.bench:
        return _bench(args, config)

    try:
        pipeline = Pipeline(config, mode_override=args.mode)
        code = pipeline.run(stop)
        if code and pipeline.error:
            print(f"error: {redact(pipeline.error)}", file=sys.stderr)
        return code
    except RecognizerError as exc:  # ConfigError included (exit code 2)
        return _error(exc)


def _error(exc: RecognizerError) -> int:
    """One line on stderr, credentials redacted; the error class's exit code."""
    print(f"error: {redact(exc)}", file=sys.stderr)
    return exc.exit_code


def _bench(args: argparse.Namespace, config) -> int:
    from streamer.core.bench import BenchConfig, run_bench

    try:
        if args.bench_batches:
            batches = tuple(int(b) for b in args.bench_batches.split(","))
        else:
            batches = tuple(sorted({1, config.batching.max_batch}))
        if min(batches) <= 0 or args.bench_repeats <= 0:
            raise ValueError
    except ValueError:
        print("error: --bench-batches must be positive integers separated by commas, --bench-repeats positive",
              file=sys.stderr)
        return 2
    try:
        return run_bench(config, BenchConfig(batches=batches, repeats=args.bench_repeats, source=args.bench_source),
                         sys.stdout)
    except RecognizerError as exc:
        return _error(exc)


def exit_now(code: int) -> None:
    """Exit with ``code`` without waiting for a thread still blocked inside OpenCV's open or read.

    Such a call cannot be interrupted and may last its whole timeout; the pipeline has already
    stopped everything else and closed every socket, so the thread is abandoned (R19).
    """
    stuck = [t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if not stuck:
        sys.exit(code)
    log.warning("exiting without waiting for %s (blocked in a capture backend call)", ", ".join(stuck))
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
