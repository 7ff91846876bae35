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
import signal


def _stop_before_main(signum, frame) -> None:
    raise SystemExit(0)  # nothing has started yet: a clean stop (main() installs the real handler)


if __name__ == "__main__":  # first thing the process does, before any project import (R19)
    for _sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_sig, _stop_before_main)

from streamer.sources.cvenv import prepare_opencv_environment  # noqa: E402

# The CLI owns the process: OpenCV reads these only before cv2 is first imported.
prepare_opencv_environment()

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402

from model.errors import ConfigError, RecognizerError  # noqa: E402
from streamer.redact import redact  # noqa: E402
from streamer.sources.nativelog import NativeLogCapture  # noqa: E402

log = logging.getLogger("run_stream")

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run_stream.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path,
                   help=f"YAML config, merged key by key over {DEFAULT_CONFIG.relative_to(DEFAULT_CONFIG.parents[1])}; "
                        "its relative paths are relative to its folder; ${ENV} is expanded (docs/CONFIG.md)")
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
    p.add_argument("--print", dest="print_results", action=argparse.BooleanOptionalAction, default=None,
                   help="print one line per result on stdout, as python -m streamer.subscribe does (default: on "
                        "when stdout is a terminal and --publish is not given)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics (turns metrics on)")
    p.add_argument("--annotate", metavar="OUT.mp4",
                   help="write the video with the top action, its score and the stream state drawn on it")
    p.add_argument("--show", action="store_true", default=None,
                   help="show the annotated video in a window (needs a display)")
    p.add_argument("--snapshot", metavar="ADDRESS",
                   help="bind a snapshot socket for late joiners, e.g. tcp://127.0.0.1:5556")
    p.add_argument("--control", metavar="ADDRESS|off",
                   help="the control socket that adds, removes and changes sources while running (python -m "
                        "streamer.ctl), e.g. tcp://127.0.0.1:5557 (the default), or off")
    p.add_argument("--state", metavar="FILE",
                   help="keep the running set of sources in FILE (rewritten atomically after every change); at "
                        "start a present FILE is the source list instead of the config's")
    p.add_argument("--ui", metavar="ADDRESS|off",
                   help="serve the web console on HOST:PORT (default 127.0.0.1:8080), or off")
    p.add_argument("--clips", metavar="DIR|off", help="write a clip of each event under DIR, or off")
    p.add_argument("--no-events", dest="events", action="store_false", default=None,
                   help="do not publish action events")
    p.add_argument("--cluster", metavar="ADDRESS",
                   help="serve the sources from worker actors on Ray (docs/CLUSTER.md): local:N starts a local Ray "
                        "with N workers; auto, ray://HOST:10001 or HOST:6379 joins a running Ray cluster")
    p.add_argument("--workers", type=int, metavar="N", help="--cluster: number of worker actors")
    _add_bench_flags(p)
    return p


def _add_bench_flags(p: argparse.ArgumentParser) -> None:
    """``--bench`` and its options: measure the precisions here, then exit."""
    p.add_argument("--bench", action="store_true",
                   help="measure each precision on this device at the configured batch sizes, print a "
                        "recommendation and cache it for precision: auto; then exit")
    p.add_argument("--bench-batches", metavar="B,B,...",
                   help="--bench batch sizes (default: 1 and batching.max_batch)")
    p.add_argument("--bench-repeats", type=int, default=10, metavar="N", help="--bench timed runs per row")
    p.add_argument("--bench-source", metavar="VIDEO",
                   help="--bench: a video (file or URL) whose first windows are the clips top-1 agreement is "
                        "measured on (default: the motion-demo's held-out video for motion-demo, else synthetic)")


def overrides_from_args(args: argparse.Namespace) -> dict:
    """Flag values as a config dict (only flags that were given); ``${ENV}`` in them is expanded at load."""
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
    if args.control is not None:
        out.setdefault("control", {})["address"] = None if args.control == "off" else args.control
    put("control", "state_file", args.state)
    put("events", "enabled", args.events)
    put("cluster", "address", args.cluster)
    put("cluster", "workers", args.workers)
    for section, key, value in (("ui", "address", args.ui), ("clips", "dir", args.clips)):
        if value is not None:
            put(section, "enabled", value != "off")
            put(section, key, None if value == "off" else value)
    return out


def load_app_config(args: argparse.Namespace):
    """configs/default.yaml, the ``--config`` file merged over it, the flags over both (docs/CONFIG.md)."""
    from streamer.configfile import load_config

    return load_config(args.config, overrides_from_args(args), defaults=DEFAULT_CONFIG)


def setup_logging(level: str, terminal) -> None:
    """Log to stderr, never into the status line (``terminal``: streamer/ops/statusline.py); every line
    goes through the credential redactor (S6), tracebacks included."""
    from streamer.ops.statusline import TerminalHandler
    from streamer.redact import RedactingFormatter

    handler = TerminalHandler(terminal)
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, level), handlers=[handler])


def wants_print(args: argparse.Namespace) -> bool:
    """``--print``/``--no-print``; by default on for someone watching a terminal who has no subscriber yet."""
    if args.print_results is not None:
        return args.print_results
    return sys.stdout.isatty() and args.publish is None


class _StoppedWhileStarting(BaseException):
    """Raised by the signal handler during start-up (imports, config, model load: nothing bound, no
    thread started), so that work need not finish first (R19)."""


def main(argv: list[str] | None = None) -> int:
    stop = threading.Event()
    starting = threading.Event()
    starting.set()
    aborted = threading.Event()  # a signal interrupted start-up

    def on_signal(signum, frame) -> None:
        stop.set()
        if starting.is_set():
            starting.clear()  # once: a second signal must not interrupt the unwinding
            aborted.set()
            raise _StoppedWhileStarting

    hangup = threading.Event()  # SIGHUP: re-read the config and apply its sources (the pipeline's main loop)
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # first thing: SIGINT/SIGTERM during start-up (config, imports) is a clean stop too (R19)
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, on_signal)
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, lambda signum, frame: hangup.set())
    try:
        with NativeLogCapture():  # OpenCV's and FFmpeg's own output goes through our log, once per cause
            return _run(argv, stop, starting, aborted, hangup)
    except Exception:
        # a library the signal interrupted (safetensors, say) may turn the exception into its own
        # error: after an abort that error is a consequence of the stop, not a failure to report
        if not aborted.is_set():
            raise
        log.info("stop requested during start-up")
        return 0
    except _StoppedWhileStarting:
        log.info("stop requested during start-up")
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(argv: list[str] | None, stop: threading.Event, starting: threading.Event,
         aborted: threading.Event, hangup: threading.Event) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_app_config(args)
    except ConfigError as exc:
        if aborted.is_set():
            raise  # main() treats it as the stop it is
        return _error(exc)
    from streamer.ops.statusline import Terminal

    terminal = Terminal()
    setup_logging(config.logging.level, terminal)
    try:
        from streamer.control.state_file import resume

        config = resume(config)  # a present state file is the source list (R24)
    except ConfigError as exc:
        return _error(exc)

    from streamer.pipeline import Pipeline, tune_interpreter

    tune_interpreter()
    import torch  # noqa: F401  the slowest import (~1.5 s), done while a signal still aborts start-up

    if args.bench:
        starting.clear()
        return _bench(args, config)

    try:
        from streamer.control.sdnotify import Notifier

        if config.cluster.address is not None:
            from streamer.cluster.head import ClusterHead  # Ray is imported only here (the [cluster] extra)

            pipeline = ClusterHead(config, mode_override=args.mode, reload_config=lambda: load_app_config(args),
                                   notifier=Notifier())
        else:
            pipeline = Pipeline(config, mode_override=args.mode, terminal=terminal, print_results=wants_print(args),
                                reload_config=lambda: load_app_config(args), notifier=Notifier())
        # until the pipeline binds its first socket (after the model load) a signal aborts start-up at
        # once; from then on it only sets ``stop`` and the pipeline shuts down in order
        code = pipeline.run(stop, started=starting.clear, hangup=hangup)
        if code and pipeline.error:
            print(f"error: {redact(pipeline.error)}", file=sys.stderr)  # the one line that says why
        return code
    except RecognizerError as exc:  # ConfigError included (exit code 2)
        if aborted.is_set():
            raise  # main() treats it as the stop it is
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
    """Exit with ``code`` at once: flush the log and stdio, then ``os._exit``.

    Everything that matters is done by now: the pipeline has joined its threads against one
    deadline, closed every socket and finished its files. What ``os._exit`` skips is the
    interpreter's finalization (with torch loaded it took 4-5 s of wall time on a busy two-core
    machine, enough to miss the 3 s a SIGTERM gets, R19) and any thread the pipeline left behind,
    blocked in a call that cannot be interrupted (OpenCV's open or read, a forward pass), which its
    shutdown has named in the log with what it is blocked in.
    """
    stuck = [t.name for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
    if stuck:
        log.debug("exiting without joining %s", ", ".join(stuck))
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
