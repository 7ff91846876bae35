"""The ``cluster`` section and flags, what cluster mode refuses, the expected cost of a source and the
rebalancing moves; no Ray."""

from __future__ import annotations

import pytest

import run_stream
from model.errors import ConfigError
from streamer.cluster.cost import DEFAULT_SIZE, Bin, Item, expected_cost, moves
from streamer.cluster.head import ClusterHead
from streamer.cluster.worker import share_config
from streamer.config import AppConfig, ClusterConfig, SourceConfig

SOURCE = [{"id": "cam", "url": "testpattern://"}]


def flags(*argv: str) -> AppConfig:
    return run_stream.load_app_config(run_stream.build_parser().parse_args(list(argv)))


@pytest.mark.parametrize("address, local", [("local:3", 3), ("auto", None), ("ray://head.lan:10001", None),
                                            ("10.0.0.5:6379", None), (None, None)])
def test_addresses(address, local):
    assert ClusterConfig(address=address).local_workers == local


@pytest.mark.parametrize("address, error", [
    ("local:0", "cluster.address: 'local:0' needs a worker count N >= 1 (local:N, e.g. local:2)"),
    ("local:x", "cluster.address: 'local:x' needs a worker count N >= 1 (local:N, e.g. local:2)"),
    ("ray://head", "cluster.address: 'ray://head' must be local:N, auto, ray://HOST:PORT or HOST:PORT (a Ray head's "
                   "address)"),
    ("http://h:1/x", "cluster.address: 'http://h:1/x' must be local:N, auto, ray://HOST:PORT or HOST:PORT (a Ray "
                     "head's address)"),
])
def test_a_bad_address_is_one_line(address, error):
    with pytest.raises(ConfigError) as info:
        AppConfig(sources=SOURCE, cluster={"address": address})
    assert str(info.value) == error


def test_flags_set_the_section_and_a_bad_one_exits_2(capsys):
    cfg = flags("--cluster", "local:2", "--workers", "3")
    assert (cfg.cluster.address, cfg.cluster.workers, cfg.cluster.local_workers) == ("local:2", 3, 2)
    assert (cfg.cluster.gpus_per_worker, cfg.cluster.cpus_per_worker, cfg.cluster.max_restarts) == (None, 1.0, -1)
    assert flags().cluster.address is None  # single machine unless asked
    assert run_stream.main(["--cluster", "local:2", "--workers", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: cluster.workers: must be > 0, got 0"


def test_what_cluster_mode_cannot_do_is_refused_before_ray_starts(capsys):
    assert run_stream.main(["--cluster", "local:2", "--max-windows", "5", "--source", "testpattern://"]) == 2
    assert capsys.readouterr().err.strip() == ("error: run.max_windows: not available with --cluster (each worker "
                                               "would count its own); use --duration, or stop the head with SIGTERM")
    with pytest.raises(ConfigError, match=r"^sources\[cam\]\.mode: 'file' needs a finite source"):
        ClusterHead(AppConfig(sources=[{"id": "cam", "url": "rtsp://10.0.0.5/x", "mode": "file"}]))


def test_a_share_runs_without_the_heads_features():
    cfg = AppConfig(sources=SOURCE * 1, snapshot={"address": "tcp://127.0.0.1:5556"}, metrics={"enabled": True},
                    annotate={"path": "/tmp/x.mp4"}, run={"duration_s": 5.0},
                    publisher={"address": "tcp://0.0.0.0:5555", "sndhwm": 77}, cluster={"address": "local:2"})
    share = share_config(cfg, [SourceConfig(id="b", url="synthetic://")], "10.0.0.7")
    assert [s.id for s in share.sources] == ["b"]
    assert (share.publisher.address, share.publisher.wait_subscribers, share.publisher.sndhwm) == \
           ("tcp://10.0.0.7:*", 1, 77)
    assert share.snapshot.address is None and not share.metrics.enabled and not share.annotate.active
    assert not share.ui.enabled and share.run.duration_s is None and share.cluster.address is None
    assert share.model == cfg.model and share.window == cfg.window and share.events == cfg.events


def test_expected_cost_is_frames_a_second_times_pixels():
    def cost(url: str, **options) -> float:
        return expected_cost(SourceConfig(id="s", url=url, options=options))

    assert cost("synthetic://actions?fps=10&width=320&height=240") == 10 * 320 * 240
    assert cost("testpattern://") == 25 * 160 * 120  # the generators' defaults
    assert cost("rtsp://10.0.0.5/live", fps_hint=15.0) == 15 * DEFAULT_SIZE[0] * DEFAULT_SIZE[1]
    assert cost("0") == 30 * DEFAULT_SIZE[0] * DEFAULT_SIZE[1]


def test_rebalance_moves_few_streams_from_the_busiest_to_the_idlest():
    costs = {s: Item(s, c) for s, c in {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0, "e": 2.0}.items()}
    bins = [Bin("w0", load=10.0, items=["a", "b", "c", "d"]), Bin("w1", load=2.0, items=["e"]), Bin("w2")]
    out = moves(bins, costs)
    loads = {b.name: b.load for b in bins}
    for stream, src, dst in out:
        loads[src] -= costs[stream].cost
        loads[dst] += costs[stream].cost
    assert max(loads.values()) == 4.0 and len(out) == 2  # 12 over three workers: 4 each, in two moves
    assert moves([Bin("w0", load=3.0, items=["b"]), Bin("w1", load=2.0, items=["c"])], costs) == []  # nothing better
    assert bins[0].load == 10.0  # the workers passed in are not changed
