"""RTSP credentials never appear in logs, status messages or errors (S6): a canary password, usernames
with a dot, through every path a URL takes (running, refused, black hole, config errors, tracebacks)."""

from __future__ import annotations

import contextlib
import io
import logging
import sys

import pytest

import feeds
import run_stream
from streamer.redact import RedactingFormatter, redact

CANARY = "C4nary-pw"


@pytest.mark.parametrize("url", [
    f"rtsp://first.last:{CANARY}@127.0.0.1:8554/live",
    f"rtsp://first.last:{CANARY}@ss@127.0.0.1/live",  # "@" inside the password
    f"rtsp://a.b.c:{CANARY}/x@127.0.0.1/live",  # "/" inside the password
    f"rtsps://svc.account@example:{CANARY}@127.0.0.1:322/s?channel=1",
    f"http://127.0.0.1/cam.mjpg?user=admin&password={CANARY}",
    f"error: could not open 'rtsp://j.doe:{CANARY}@127.0.0.1/x'; retry",
])
def test_redact_hides_the_canary(url):
    shown = redact(url)
    assert CANARY not in shown and "***" in shown
    assert "127.0.0.1" in shown  # still says where


def test_log_formatter_redacts_messages_arguments_and_tracebacks():
    fmt = RedactingFormatter("%(levelname)s %(message)s")
    url = f"rtsp://first.last:{CANARY}@127.0.0.1/live"
    try:
        raise RuntimeError(f"backend failed on {url}")
    except RuntimeError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "opening %s", (url,), sys.exc_info())
    text = fmt.format(record)
    assert CANARY not in text and text.count("rtsp://***@127.0.0.1/live") == 2


@pytest.mark.rtsp
@pytest.mark.timeout(90)
def test_canary_password_never_leaks_from_a_running_pipeline(tiny_model, rtsp_ready, bikes_mp4, tmp_path):
    address = feeds.free_tcp_address()
    with feeds.RtspServer(bikes_mp4, tmp_path) as server, feeds.BlackHole() as hole:
        server.start()
        port = server.port
        sources = [  # the server ignores credentials; the pipeline must still never show them
            {"id": "good", "url": f"rtsp://first.last:{CANARY}@127.0.0.1:{port}/live"},
            {"id": "refused", "url": f"rtsp://admin.user:{CANARY}@ss@127.0.0.1:{feeds.free_port()}/x"},
            {"id": "hole", "url": f"rtsp://j.doe:{CANARY}@127.0.0.1:{hole.port}/y"},
        ]
        cfg = feeds.write_config(tmp_path / "c.yaml", sources,
                                 options="open_timeout_s: 2, read_timeout_s: 2, backoff_initial_s: 0.2, backoff_max_s: 1")
        with feeds.Recorder(address, tmp_path / "m.jsonl") as rec, \
                feeds.Pipeline(["--config", str(cfg), "--model", str(tiny_model), "--publish", address,
                                "--log-level", "DEBUG"], tmp_path / "run.log") as pipe:
            assert feeds.wait_until(lambda: len(rec.results("good")) >= 3, 40), pipe.stderr()[-2000:]
            assert feeds.wait_until(lambda: (s := rec.latest_status("hole")) and s["counters"]["reconnects"] >= 1, 15)
            server.kill()  # the good stream now goes through backoff too, with its URL in the reason
            assert feeds.wait_until(lambda: rec.latest_status("good")["state"] in ("stalled", "backoff"), 10)
            assert pipe.terminate(10) == 0
        wire = (tmp_path / "m.jsonl").read_text()
        log = pipe.stderr()
    assert CANARY not in log and CANARY not in wire
    assert f"rtsp://***@127.0.0.1:{port}/live" in wire  # the status names the source, without credentials
    assert "rtsp://***@127.0.0.1" in log and "backoff" in log


def test_canary_never_in_config_errors(capsys):
    for argv in (["--source", f"cam=rtps://first.last:{CANARY}@127.0.0.1/live"],  # unknown scheme
                 ["--source", f"rtsp://first.last:{CANARY}@127.0.0.1/live", "--mode", "file"],  # mode not possible
                 ["--source", f"cam=rtsp://first.last:{CANARY}@127.0.0.1/live", "--publish", "udp://x"]):
        assert run_stream.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and CANARY not in err


# ---- one parser, fuzzed: any RFC 3986 userinfo, secret query keys ----------------------------------
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from streamer.redact import SECRET_KEYS, redact_url, secret_spans  # noqa: E402

_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
_SUB_DELIMS = "!$&'()*+,;="
#: RFC 3986: userinfo = *( unreserved / pct-encoded / sub-delims / ":" )
userinfo = st.lists(st.one_of(st.sampled_from(list(_UNRESERVED + _SUB_DELIMS + ":")),
                              st.builds(lambda b: f"%{b:02X}", st.integers(0, 255))), min_size=1, max_size=40).map("".join)
#: a query value: pchar / "/" / "?" (RFC 3986), less "&" (it ends the pair) and "#" (it ends the query)
query_value = st.lists(st.sampled_from(list(_UNRESERVED + "!$'()*+,;=:@/?") + ["%2F", "%26"]),
                       min_size=1, max_size=30).map("".join)
secret_key = st.sampled_from(sorted(SECRET_KEYS)).flatmap(
    lambda k: st.sampled_from([k, k.upper(), k.capitalize()]))
#: how a URL sits in a message: bare, quoted by repr(), in parentheses, followed by more text
contexts = st.sampled_from(["{}", "could not open {!r}; retry 2 in 1.0 s", "source ({})", "{} failed", "'{}'",
                            "error: sources[cam].url: {!r}: unknown scheme"])


@settings(max_examples=300, deadline=None)
@given(user=userinfo, password=st.one_of(st.none(), userinfo), context=contexts,
       scheme=st.sampled_from(["rtsp", "rtsps", "http", "https", "tcp"]))
def test_any_rfc3986_userinfo_is_hidden_in_any_message(user, password, context, scheme):
    info = user if password is None else f"{user}:{password}"
    url = f"{scheme}://{info}@10.0.0.5:554/live/ch1"
    expected = f"{scheme}://***@10.0.0.5:554/live/ch1"
    assert redact_url(url) == expected
    start = len(f"{scheme}://")
    assert secret_spans(url) == [(start, start + len(info))]
    message = context.format(url)
    assert redact(message) == message.replace(f"{info}@10.0.0.5", "***@10.0.0.5")


@settings(max_examples=300, deadline=None)
@given(key=secret_key, value=query_value, cut=st.integers(0, 30), before=st.booleans(), after=st.booleans(),
       context=contexts)
def test_secret_query_values_are_hidden_and_the_rest_kept(key, value, cut, before, after, context):
    secret = value[:cut] + CANARY + value[cut:]
    query = ("user=admin&" if before else "") + f"{key}={secret}" + ("&channel=1" if after else "")
    url = f"http://10.0.0.5/cam.mjpg?{query}"
    shown = redact(context.format(url))
    assert CANARY not in shown and "***" in shown
    if "@" not in secret:  # else the value's "@" may end a userinfo: the host is hidden too (too much, never too little)
        kept = ("user=admin&" if before else "") + f"{key}=***" + ("&channel=1" if after else "")
        assert redact_url(url) == f"http://10.0.0.5/cam.mjpg?{kept}"
        quote = repr(url)[0] if "!r" in context else ""  # repr() picks " when the URL holds a '
        assert shown.startswith(context.split("{")[0] + quote + "http://10.0.0.5/cam.mjpg?")


def test_the_passwords_the_chaos_run_found():
    for url in ("rtsp://admin:S3cr3t'PW@host/x", "http://h/c?password=hunter2", "http://h/c?pw=hunter2",
                "http://h/c?token=hunter2&x=1"):
        shown = redact(f"failed: {url!r}")
        assert "S3cr3t" not in shown and "hunter2" not in shown and "***" in shown, shown


CHANNEL_CANARY = "Zq9Canary"


@pytest.mark.timeout(180)
@settings(max_examples=2, deadline=None, suppress_health_check=list(HealthCheck), phases=(Phase.generate,))
@given(infos=st.lists(userinfo, min_size=2, max_size=2), value=query_value, key=secret_key)
def test_fuzzed_credentials_never_reach_any_output_channel(tiny_model, tmp_path_factory, infos, value, key):
    """A pipeline whose sources carry fuzzed credentials with a canary inside: log, status (source and
    reason), snapshot, metrics and config errors never show the canary. Two pipelines, no shrinking
    (each example is a process run): the parser itself is fuzzed above."""
    import json
    import urllib.request

    from streamer.outputs.snapshot import request_snapshot

    tmp = tmp_path_factory.mktemp("channels")
    secret = f"{value}{CHANNEL_CANARY}"
    urls = {f"rtsp{i}": f"rtsp://{info[:20]}{CHANNEL_CANARY}{info[20:]}@127.0.0.1:{feeds.free_port()}/x"
            for i, info in enumerate(infos)}
    urls["mjpeg"] = f"http://127.0.0.1:{feeds.free_port()}/cam.mjpg?user=a&{key}={secret}"
    urls["found"] = f"rtsp://admin:S3cr3t'{CHANNEL_CANARY}@127.0.0.1:{feeds.free_port()}/x?pw={CHANNEL_CANARY}"
    cfg = feeds.write_config(tmp / "c.yaml", [{"id": k, "url": v} for k, v in urls.items()],
                             options="open_timeout_s: 1, read_timeout_s: 1, backoff_initial_s: 0.2, backoff_max_s: 0.5")
    address, snap_address, metrics_port = feeds.free_tcp_address(), feeds.free_tcp_address(), feeds.free_port()
    with feeds.Recorder(address, tmp / "m.jsonl") as rec, \
            feeds.Pipeline(["--config", str(cfg), "--model", str(tiny_model), "--publish", address, "--snapshot",
                            snap_address, "--metrics-port", str(metrics_port), "--log-level", "DEBUG"],
                           tmp / "run.log") as pipe:

        def every_source_backed_off():
            assert pipe.proc.poll() is None, pipe.stderr()[-2000:]
            return all((s := rec.latest_status(k)) and s["state"] == "backoff" for k in urls)

        assert feeds.wait_until(every_source_backed_off, 60), pipe.stderr()[-2000:]
        snapshot = json.dumps(request_snapshot(snap_address, timeout=10))
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
        assert pipe.terminate(15) == 0
        statuses = rec.statuses()
    channels = {"log": pipe.stderr(), "status": json.dumps(statuses), "snapshot": snapshot, "metrics": metrics}
    for name, text in channels.items():
        assert CHANNEL_CANARY not in text, name
    for stream in urls:  # they do say which source, without the credentials
        latest = [s for s in statuses if s["stream"] == stream and s["state"] == "backoff"][-1]
        assert latest["source"] == redact(urls[stream]) and "***" in latest["source"]
        assert latest["source"] in latest["reason"]  # "could not open URL; retry ..."
    for argv in (["--source", f"cam={urls['rtsp0'].replace('rtsp', 'rtps', 1)}"],  # unknown scheme
                 ["--source", urls["mjpeg"], "--mode", "file"]):  # a mode the source cannot run in
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert run_stream.main(argv) == 2
        assert err.getvalue().startswith("error: ") and CHANNEL_CANARY not in err.getvalue(), err.getvalue()
