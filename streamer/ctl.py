"""Operate a running monitor through its control socket.

    python -m streamer.ctl add door rtsp://10.0.0.5/live --option open_timeout_s=3
    python -m streamer.ctl add clip /videos/a.mp4 --mode file --option loop=true
    python -m streamer.ctl update door rtsp://10.0.0.6/live
    python -m streamer.ctl remove door
    python -m streamer.ctl list [--json]
    python -m streamer.ctl reload          # the same as SIGHUP: re-read --config, apply its sources
    python -m streamer.ctl health          # exit 0 only when every stream is running or ended
    python -m streamer.ctl rebalance       # cluster mode: even out the workers' load (moves live streams)

Exit status 0 when the service did it, 1 with one ``error:`` line otherwise (refused, no reply),
2 for a usage error. ``--option KEY=VALUE`` takes any source option the YAML accepts; the value is
read as YAML (``true``, ``3``, ``2.5``), and the whole entry is validated by the service as the YAML is.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from model.errors import RecognizerError
from streamer.control.api import DEFAULT_ADDRESS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m streamer.ctl", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--address", default=DEFAULT_ADDRESS,
                   help=f"the control socket (default {DEFAULT_ADDRESS})")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="wait this long for a reply (default 5)")
    p.add_argument("--server-key", metavar="FILE", help="CURVE: the service's public key file (NAME.key)")
    p.add_argument("--client-key", metavar="FILE", help="CURVE: this client's secret key file (NAME.key_secret)")
    ops = p.add_subparsers(dest="op", required=True, metavar="OPERATION")
    for op, text in (("add", "start a new stream"), ("update", "replace the stream with this id")):
        sp = ops.add_parser(op, help=text)
        sp.add_argument("id", help="stream id (letters, digits, - and _)")
        sp.add_argument("url", help="camera index, /dev/videoN, rtsp://, http(s)://, tcp://, file, testpattern://, "
                                    "synthetic://")
        sp.add_argument("--mode", choices=["live", "file"], help="default: the kind of source's own")
        sp.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="a source option (sources[].options in the YAML); repeatable")
    ops.add_parser("remove", help="stop a stream and release what it held").add_argument("id", help="stream id")
    ls = ops.add_parser("list", help="every stream with its state, url (redacted), mode, fps, results, drops")
    ls.add_argument("--json", action="store_true", help="the reply's sources as one JSON array")
    ops.add_parser("reload", help="re-read the config file and apply its sources (as SIGHUP does)")
    ops.add_parser("health", help="exit 0 only when every stream is running or intentionally idle (ended)")
    ops.add_parser("rebalance", help="cluster mode: move the fewest live streams that even out the workers' load")
    return p


def source_entry(args: argparse.Namespace) -> dict[str, Any]:
    """The ``source`` of an add/update request from the command line; raises ValueError on a bad --option."""
    import yaml

    entry: dict[str, Any] = {"id": args.id, "url": args.url}
    if args.mode:
        entry["mode"] = args.mode
    options: dict[str, Any] = {}
    for text in args.option:
        key, sep, value = text.partition("=")
        if not sep or not key:
            raise ValueError(f"--option {text!r}: write KEY=VALUE, e.g. --option open_timeout_s=3")
        try:
            options[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            raise ValueError(f"--option {text!r}: the value is not a YAML scalar") from None
    if options:
        entry["options"] = options
    return entry


def format_table(sources: list[dict]) -> str:
    """One line per stream; a WORKER column when a cluster head answered (its entries name their worker)."""
    cluster = any("worker" in s for s in sources)
    rows = [("ID", "STATE", "MODE", "FPS", "RESULTS", "DROPS") + (("WORKER",) if cluster else ()) + ("URL",)]
    rows += [(s["id"], s["state"] + (f" ({s['reason']})" if s.get("reason") else ""), s["mode"], f"{s['fps']:.1f}",
              str(s["results"]), str(s["drops"])) + ((s.get("worker") or "-",) if cluster else ()) + (s["url"],)
             for s in sources]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows)


def _curve(args: argparse.Namespace, p: argparse.ArgumentParser):
    if bool(args.server_key) != bool(args.client_key):
        p.error("--server-key and --client-key go together")
    if not args.server_key:
        return None
    from streamer.outputs.security import client_options

    return client_options(args.server_key, args.client_key)


def run(args: argparse.Namespace, curve) -> int:
    from streamer.control.client import Client

    with Client(args.address, timeout=args.timeout, curve=curve) as client:
        if args.op in ("add", "update"):
            reply = client.request(args.op, source=source_entry(args))
            print(f"{args.op}: {reply['id']} (session {reply['session']}, {reply['state']})")
        elif args.op == "remove":
            print(f"removed: {client.remove(args.id)['id']}")
        elif args.op == "list":
            sources = client.list()
            print(json.dumps(sources, indent=1) if args.json else format_table(sources))
        elif args.op == "rebalance":
            moved = client.request("rebalance")["moved"]
            print("rebalanced: " + (", ".join(f"{m['id']} {m['from']}->{m['to']}" for m in moved) or "nothing moved"))
        elif args.op == "reload":
            r = client.reload()
            print(f"reloaded: added {r['added']}, removed {r['removed']}, updated {r['updated']}, "
                  f"{r['unchanged']} unchanged" + (f"; CURVE allow-list: {r['allow_list_keys']} key(s)"
                                                   if "allow_list_keys" in r else ""))
            if "allow_list_error" in r:
                print(f"error: CURVE allow-list not reloaded: {r['allow_list_error']}", file=sys.stderr)
                return 1
        else:
            h = client.health()
            if not h["healthy"]:
                print(f"error: unhealthy: {'; '.join(h['problems'])}", file=sys.stderr)
                return 1
            print(f"healthy: {h['streams']} stream(s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.timeout <= 0:
        p.error("--timeout must be > 0")
    try:
        return run(args, _curve(args, p))
    except (RecognizerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
