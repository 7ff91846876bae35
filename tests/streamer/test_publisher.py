"""Publisher and subscriber over real ZeroMQ sockets: any (topic, dict), heartbeats, loss detection, bad input."""

from __future__ import annotations

import copy
import threading
import time

import pytest
import zmq

from model.errors import PublisherError
from streamer.config import PublisherConfig
from streamer.outputs import protocol
from streamer.outputs.publisher import Publisher
from streamer.core.stats import StatsRegistry
from streamer.subscribe import Collector, Subscriber, format_result


def started(address: str, stats: StatsRegistry, **kw) -> Publisher:
    pub = Publisher(PublisherConfig(address=address, **kw), stats, zmq.Context.instance())
    pub.start(threading.Event())
    return pub


def test_any_topic_and_dict_goes_out_with_publish_time(tcp_address):
    stats = StatsRegistry()
    with Subscriber(tcp_address, topics=("event.", "custom")) as sub:
        pub = started(tcp_address, stats, wait_subscribers=1)
        try:
            assert pub.publish("event.cam0", {"type": "event", "version": 1, "what": "fall"})
            topic, msg = sub.recv(timeout=10)
        finally:
            pub.stop()
    assert topic == "event.cam0" and msg["what"] == "fall" and isinstance(msg["published_ts"], float)


def test_the_dict_handed_over_is_never_changed_what_is_sent_is_stamped(tcp_address):
    stats = StatsRegistry()
    s = stats.add("cam0", "x")
    seen = []
    msg = protocol.result_message(stream="cam0", session="s", seq=0, frame_indices=[0, 2], frame_ts=[1.0, 1.1],
                                  top_k=[{"label": "a", "score": 1.0}], model={}, inference_ms=1.0, age_ms=2.0,
                                  batch_size=1)
    before = copy.deepcopy(msg)
    with Subscriber(tcp_address, topics=("result.",)) as sub:
        pub = started(tcp_address, stats, wait_subscribers=1)
        pub.listeners.append(lambda topic, payload: seen.append(payload) if topic.startswith("result.") else None)
        try:
            assert pub.publish("result.cam0", msg, capture_mono=time.monotonic() - 0.05, stats=s)
            _, got = sub.recv(timeout=10)
        finally:
            pub.stop()
    assert msg == before  # the publisher copied it: the inference thread's dict is untouched
    assert msg["published_ts"] is None and msg["latency_ms"]["capture_to_publish"] is None
    assert isinstance(got["published_ts"], float) and got["latency_ms"]["capture_to_publish"] >= 50.0
    assert seen == [got] and s.last_result == got  # listeners and the stats see what went out


def test_collector_gathers_in_the_background_until_closed(tcp_address):
    stats = StatsRegistry()
    with Collector(tcp_address, ("event.",)) as collector:
        pub = started(tcp_address, stats, wait_subscribers=1)
        try:
            for i in range(5):
                assert pub.publish("event.cam0", {"type": "event", "version": 1, "n": i})
            collector.close(drain_s=0.5)
        finally:
            pub.stop()
    assert [m["n"] for m in collector.messages] == [0, 1, 2, 3, 4] and collector.gaps == 0


def test_idle_publisher_sends_status_heartbeats(tcp_address, validate):
    stats = StatsRegistry()
    s = stats.add("cam0", "rtsp://***@h/x")
    s.state = "running"
    with Subscriber(tcp_address, topics=("status.",)) as sub:
        pub = started(tcp_address, stats, heartbeat_s=0.05, wait_subscribers=1)
        try:
            got = [sub.recv(timeout=10) for _ in range(3)]  # nothing else is sent: these are heartbeats
        finally:
            pub.stop()
    for topic, msg in got:
        assert topic == "status.cam0" and msg["state"] == "running" and msg["source"] == "rtsp://***@h/x"
        validate(msg)
    assert "status cam0" not in format_result(got[0][1]) and "running" in format_result(got[0][1])


def test_subscriber_counts_gaps_and_drops_malformed(tcp_address):
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(tcp_address)
    try:
        with Subscriber(tcp_address, topics=("result.",), max_bytes=4096) as sub:
            assert pub.poll(5000)  # subscription arrived
            pub.recv()
            pub.send_multipart([b"result.a", b"not json"])
            pub.send_multipart([b"result.a", b"[1, 2]"])
            pub.send_multipart([b"result.a", b'{"type": "result", "stream": "a", "seq": 3}'])
            pub.send_multipart([b"result.a", b'{"type": "result", "stream": "a", "seq": 7}'])
            first = sub.recv(timeout=5)
            second = sub.recv(timeout=5)
    finally:
        pub.close(0)
    assert first[1]["seq"] == 3 and second[1]["seq"] == 7
    assert sub.gaps == 3 and sub.malformed == 2


def test_subscriber_bounds_message_size(tcp_address):
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(tcp_address)
    try:
        with Subscriber(tcp_address, topics=("result.",), max_bytes=4096) as sub:
            assert pub.poll(5000)
            pub.recv()
            pub.send_multipart([b"result.a", b"x" * 10_000])  # over max_bytes: ZeroMQ drops it (and the peer)
            assert sub.recv(timeout=1.0) is None
    finally:
        pub.close(0)


def test_bind_failure_is_a_publisher_error(tcp_address):
    ctx = zmq.Context.instance()
    blocker = ctx.socket(zmq.PUB)
    blocker.setsockopt(zmq.LINGER, 0)
    blocker.bind(tcp_address)
    try:
        pub = Publisher(PublisherConfig(address=tcp_address), StatsRegistry(), ctx)
        with pytest.raises(PublisherError, match="cannot bind the publisher to tcp://127.0.0.1"):
            pub.start(threading.Event())
    finally:
        blocker.close(0)


def test_full_queue_drops_and_counts_instead_of_blocking(tcp_address):
    stats = StatsRegistry()
    s = stats.add("a", "a")
    pub = Publisher(PublisherConfig(address=tcp_address, queue_size=2), stats, zmq.Context.instance())  # not started
    assert pub.publish("result.a", {}, stats=s) and pub.publish("result.a", {}, stats=s)
    assert not pub.publish("result.a", {}, stats=s)
    assert s.drops["publish_queue_full"] == 1


def test_socket_options(tcp_address):
    """SNDHWM and LINGER as configured, MAXMSGSIZE at the subscription limit (S9), read back from the socket."""
    from streamer.outputs import protocol

    stats = StatsRegistry()
    pub = started(tcp_address, stats, sndhwm=37, linger_ms=50)
    try:
        assert pub.alive()
        assert pub.options == {"SNDHWM": 37, "LINGER": 50, "MAXMSGSIZE": protocol.MAX_SUBSCRIPTION_BYTES}
    finally:
        pub.stop()
    assert not pub.alive()


def test_human_readable_result_shows_the_ground_truth_only_when_the_source_has_one():
    base = {"type": "result", "stream": "demo", "seq": 3, "top_k": [{"label": "grow", "score": 0.9}],
            "latency_ms": {"capture_to_publish": 12.0}, "window": {"frame_indices": [0, 4, 8]}}
    labeled = {**base, "window": {**base["window"], "label": "shrink"}}
    assert format_result(labeled).endswith("[truth: shrink]")
    assert "truth" not in format_result(base)
    assert "frames 0-8: grow 0.90" in format_result(base)


def test_human_readable_lines_round_and_label_their_numbers():
    result = {"type": "result", "stream": "demo", "seq": 3, "top_k": [{"label": "grow", "score": 0.9}],
              "latency_ms": {"capture_to_publish": 4543.229}, "window": {"frame_indices": [0, 8]}}
    assert format_result(result).endswith("(capture to publish 4543 ms)")
    event = {"type": "event", "stream": "demo", "phase": "end", "label": "grow", "id": "r-demo-1",
             "start_frame": 10, "end_frame": 90, "peak_score": 0.982069}
    assert format_result(event).endswith("peak 0.98") and "0.982069" not in format_result(event)


def test_the_cli_prints_events_by_default_and_status_with_all(tcp_address, capsys):
    from streamer import subscribe

    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(tcp_address)
    try:
        for argv, kinds in (([], {b"result.", b"event."}), (["--all"], {b"result.", b"event.", b"status."})):
            done = {}
            cli = threading.Thread(target=lambda: done.update(rc=subscribe.main(
                [tcp_address, "--count", "1", "--timeout", "20", *argv])))
            cli.start()
            subscribed = set()
            while subscribed != kinds:
                assert pub.poll(10_000), subscribed
                subscribed.add(pub.recv()[1:])
            pub.send_multipart(protocol.encode("status.demo", {"type": "status", "stream": "demo", "state": "running"}))
            pub.send_multipart(protocol.encode("event.demo", {"type": "event", "stream": "demo", "phase": "start",
                                                              "label": "grow", "id": "r-demo-1", "peak_score": 0.9}))
            pub.send_multipart(protocol.encode("result.demo", {"type": "result", "stream": "demo", "seq": 0,
                                                               "top_k": [{"label": "grow", "score": 0.9}]}))
            cli.join(30)
            printed = capsys.readouterr().out
            assert done == {"rc": 0} and "event start grow" in printed and "#0" in printed
            assert ("status running" in printed) == ("--all" in argv)
    finally:
        pub.close(0)
