"""No pickle anywhere (S5, S7, S8): a scan of the project's code, and the two places where untrusted
bytes arrive: a checkpoint with a pickle payload, and a pickled message on the wire."""

from __future__ import annotations

import ast
import pickle
import threading
from pathlib import Path

import pytest

import feeds
from model.errors import CheckpointError

REPO = feeds.REPO
CODE = [p for folder in ("model", "streamer", "benchmarks", "tools") for p in (REPO / folder).rglob("*.py")] + \
       [REPO / "run_stream.py"]

BANNED_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "marshal", "shelve", "joblib"}
BANNED_CALLS = {"recv_pyobj", "send_pyobj", "read_pickle", "to_pickle", "unsafe_load", "full_load", "load_all"}


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def findings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out = []
    for node in ast.walk(tree):
        where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            out += [f"{where} imports {a.name}" for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in BANNED_MODULES:
            out.append(f"{where} imports from {node.module}")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            if name in BANNED_CALLS:
                out.append(f"{where} calls {name}")
            if owner == "torch" and name == "load":
                wo = _keyword(node, "weights_only")
                if not (isinstance(wo, ast.Constant) and wo.value is True):
                    out.append(f"{where} torch.load without weights_only=True")
            if owner == "yaml" and name == "load":
                out.append(f"{where} yaml.load (use yaml.safe_load)")
            if name == "load" and owner in ("np", "numpy"):
                ap = _keyword(node, "allow_pickle")
                if isinstance(ap, ast.Constant) and ap.value is True:
                    out.append(f"{where} numpy load with allow_pickle=True")
    return out


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text("import pickle\nimport torch, yaml\ntorch.load('x')\nyaml.load(s)\nsock.recv_pyobj()\n"
                   "torch.load('y', weights_only=False)\n")
    found = findings(bad)
    assert len(found) == 5, found


def test_no_pickle_in_the_project():
    assert len(CODE) > 20
    problems = [f for path in CODE for f in findings(path)]
    assert not problems, problems


class _Payload:
    """Unpickling this creates a file: proof that arbitrary code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_with_a_pickle_payload_is_refused_and_nothing_runs(tmp_path):
    import torch

    import model

    marker = tmp_path / "payload-ran"
    ckpt = tmp_path / "evil.pth"
    torch.save({"model_state": {"w": torch.zeros(2)}, "extra": _Payload(marker)}, ckpt)
    with pytest.raises(CheckpointError) as info:
        model.load_model(str(ckpt))
    assert "\n" not in str(info.value) and "evil.pth" in str(info.value)
    assert not marker.exists()


def test_a_pickled_message_is_dropped_by_the_subscriber(tmp_path):
    import zmq

    from streamer.subscribe import Subscriber

    marker = tmp_path / "payload-ran"
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(feeds.ANY_PORT)
    address = pub.getsockopt(zmq.LAST_ENDPOINT).decode()  # the port the system picked
    sub = Subscriber(address, ("result.",), context=ctx)
    stop = threading.Event()

    def send():  # until the subscription has arrived (slow joiner), the evil message then a good one
        while not stop.wait(0.05):
            pub.send_multipart([b"result.cam", pickle.dumps(_Payload(marker))])
            pub.send_multipart([b"result.cam", b'{"type": "result", "version": 1, "stream": "cam", "seq": 0}'])

    sender = threading.Thread(target=send)
    sender.start()
    try:
        got = sub.recv(timeout=10)
    finally:
        stop.set()
        sender.join()
        sub.close()
        pub.close()
        ctx.term()
    assert got is not None and got[1]["stream"] == "cam"
    assert sub.malformed >= 1 and not marker.exists()
