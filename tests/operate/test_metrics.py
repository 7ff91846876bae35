"""The Prometheus endpoint: off by default, on with --metrics-port, scraped over HTTP during a live run."""

from __future__ import annotations

import urllib.error
import urllib.request

import feeds
import pytest

from streamer.configfile import build_config


def scrape(port: int) -> dict[tuple[str, frozenset], float] | None:
    """Every sample of the endpoint as {(name, labels): value}; None while nothing answers."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except (urllib.error.URLError, ConnectionError):
        return None
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_metrics_are_off_by_default_and_on_with_the_flag():
    import run_stream

    assert build_config({"sources": ["x.mp4"]}).metrics.enabled is False
    args = run_stream.build_parser().parse_args(["--source", "x.mp4", "--metrics-port", "9999"])
    cfg = run_stream.load_app_config(args)
    assert cfg.metrics.enabled and cfg.metrics.port == 9999 and cfg.metrics.host == "127.0.0.1"


def test_counters_and_histograms_scraped_during_a_live_run(tiny_model, tmp_path):
    port = feeds.free_port()
    streams = ("a", "b")
    args = ["--source", "a=synthetic://actions?seed=1&fps=20", "--source", "b=testpattern://?fps=20",
            "--model", str(tiny_model), "--publish", feeds.free_tcp_address(), "--metrics-port", str(port)]
    with feeds.Pipeline(args, tmp_path / "run.log") as run:

        def enough():
            samples = scrape(port)
            if samples and all((value(samples, "timesformer_results_total", stream=s) or 0) >= 3 for s in streams):
                return samples
            assert run.proc.poll() is None, run.stderr()
            return None

        samples = feeds.wait_until(enough, timeout=90)
        assert samples is not None, run.stderr()
        assert run.terminate(15) == 0, run.stderr()
    with pytest.raises(urllib.error.URLError):  # the server went away with the process
        urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)

    for s in streams:
        for counter in ("frames", "windows", "results"):
            assert value(samples, f"timesformer_{counter}_total", stream=s) > 0, counter
        assert value(samples, "timesformer_stream_state", stream=s, state="running") == 1.0
        assert value(samples, "timesformer_stream_state", stream=s, state="failed") == 0.0
        assert value(samples, "timesformer_drops_total", stream=s, reason="stale") is not None
        assert value(samples, "timesformer_reconnects_total", stream=s) == 0.0
        for hist in ("capture_to_inference_start_seconds", "inference_seconds", "capture_to_publish_seconds"):
            count = value(samples, f"timesformer_{hist}_count", stream=s)
            assert count >= 3, hist
            assert value(samples, f"timesformer_{hist}_bucket", stream=s, le="+Inf") == count
            assert value(samples, f"timesformer_{hist}_sum", stream=s) > 0, hist
    # every result came from a window of some batch; windows of both streams may share a batch
    results = sum(value(samples, "timesformer_results_total", stream=s) for s in streams)
    assert value(samples, "timesformer_batch_size_sum") >= results >= 6
    assert 1 <= value(samples, "timesformer_batch_size_count") <= value(samples, "timesformer_batch_size_sum")
    sizes = [v for (name, labels), v in samples.items() if name == "timesformer_model_bytes"]
    assert len(sizes) == 1 and sizes[0] > 10_000  # the tiny model's fp32 weights
    assert value(samples, "timesformer_publisher_sent_total") > 0
    assert value(samples, "process_resident_memory_bytes") > 0


def test_publisher_drop_counter_says_what_it_counts():
    """ZeroMQ's PUB cannot count what it drops for a slow subscriber: the metric is named for what it does
    count (messages dropped before ZeroMQ, the publisher's queue being full) and says what it does not."""
    from prometheus_client import generate_latest

    from streamer.core.stats import StatsRegistry
    from streamer.ops.metrics import Metrics, MetricsConfig

    metrics = Metrics(MetricsConfig(), StatsRegistry(), publisher_counts=lambda: (12, 3))
    text = generate_latest(metrics.registry).decode()
    assert "timesformer_publisher_queue_dropped_total 3.0" in text
    assert "timesformer_publisher_dropped" not in text
    help_line = next(line for line in text.splitlines() if line.startswith("# HELP timesformer_publisher_queue_dropped"))
    assert "queue was full" in help_line and "SNDHWM" in help_line and "seq gaps" in help_line


def test_snapshot_refusals_and_rate_limited_requests_are_counted_by_outcome():
    """What the snapshot socket turned away (issue 19's attacks) shows in the metrics, by outcome."""
    from prometheus_client import generate_latest

    from streamer.core.stats import StatsRegistry
    from streamer.ops.metrics import Metrics, MetricsConfig

    counts = {"served": 4, "refused": 2, "limited": 7}
    metrics = Metrics(MetricsConfig(), StatsRegistry(), snapshot_counts=lambda: counts)
    text = generate_latest(metrics.registry).decode()
    for outcome, n in counts.items():
        assert f'timesformer_snapshot_requests_total{{outcome="{outcome}"}} {n}.0' in text
    counts["refused"] = 3  # read at scrape time
    assert 'timesformer_snapshot_requests_total{outcome="refused"} 3.0' in generate_latest(metrics.registry).decode()
    assert "timesformer_snapshot_requests" not in generate_latest(
        Metrics(MetricsConfig(), StatsRegistry()).registry).decode()
