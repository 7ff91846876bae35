"""The console in a real browser: the embedded default (synthetic camera, motion-demo model) with the UI on
a free port, opened in headless Chromium through Selenium.

The tile shows, its top label changes, the preview loads, an event appears and its clip plays. The page
is saved as a screenshot (``CONSOLE_SCREENSHOT=docs/console.png`` writes the README's picture). Debian's
``chromium`` and ``chromium-driver`` are needed: the test skips where they are missing, never in CI.
"""

from __future__ import annotations

import os
import shutil
import signal

import feeds
import pytest
from streamer.testing.chromium import browser, missing_reason, until  # tests/fixtures/chromium.py


@pytest.fixture(scope="module")
def chromium_ready() -> None:
    reason = missing_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but {reason}")
        pytest.skip(reason)


def test_console_page_in_a_real_browser(chromium_ready, tmp_path, validate):
    clips = tmp_path / "clips"
    with feeds.Pipeline(["--publish", feeds.ANY_PORT, "--ui", "127.0.0.1:0", "--clips", str(clips)],
                        tmp_path / "run.log") as run, \
            feeds.Recorder(run.endpoint(timeout=180), tmp_path / "messages.jsonl") as recorder:
        url = run.endpoint("console", timeout=180) + "/"  # port 0: the system's choice, as the console logs it
        assert run.proc.poll() is None, run.stderr()
        driver = browser(tmp_path / "profile")
        try:
            driver.get(url)
            assert until(driver, "document.querySelector('#tile-demo')", 10), "no tile for the stream"
            first = until(driver, "document.querySelector('#tile-demo').dataset.top", 60)
            assert first, "no result reached the tile"
            changed = until(driver, f"(document.querySelector('#tile-demo').dataset.top || {first!r}) !== {first!r}",
                            10)
            assert changed, f"the top label stayed {first!r} for 10 s"
            assert until(driver, "document.querySelector('#tile-demo .preview').naturalWidth > 0", 10), \
                "the preview did not load"
            assert until(driver, "document.querySelector('#events button.play')", 180), \
                "no event with a clip appeared:\n" + run.stderr()[-3000:]
            shot = tmp_path / "console.png"
            driver.save_screenshot(str(shot))
            if os.environ.get("CONSOLE_SCREENSHOT"):
                shutil.copyfile(shot, os.environ["CONSOLE_SCREENSHOT"])
            driver.execute_script("document.querySelector('#events button.play').click();")
            played = until(driver, "(() => { const v = document.querySelector('#video');"
                                   " return v.readyState >= 2 && v.duration > 0 && v.currentSrc; })()", 20)
            assert played and "/clips/demo/" in played, "the clip did not play"
        finally:
            driver.quit()
        run.proc.send_signal(signal.SIGTERM)
        assert run.proc.wait(30) == 0, run.stderr()[-3000:]
        ends = [m for m in recorder.messages() if m["type"] == "event" and m["phase"] == "end"]
        assert any("clip" in m for m in ends), ends
        for msg in ends:  # the end message names its clip (finished at the latest when the run stopped)
            validate(msg)
            assert "clip" not in msg or (clips / msg["clip"]).is_file(), msg
    assert "Traceback" not in run.stderr(), run.stderr()[-3000:]


def test_grid_of_64_streams_and_a_phone_width_screen(chromium_ready, tmp_path):
    """Layout only: a console fed as the publisher would, 64 streams, wide and phone-sized windows."""
    import time as clock

    from streamer.ops.console.server import Console
    from streamer.config import UiConfig

    streams = [f"cam{i:02d}" for i in range(64)]
    console = Console(UiConfig(address="127.0.0.1:0"), streams)
    console.start_and_wait()
    driver = browser(tmp_path / "profile")
    try:
        for stream in streams:
            console.on_sent("result." + stream, {
                "type": "result", "stream": stream, "seq": 1, "window": {}, "published_ts": clock.time(),
                "top_k": [{"label": "move_left", "score": 0.8}, {"label": "grow", "score": 0.1},
                          {"label": "still", "score": 0.05}], "latency_ms": {"capture_to_publish": 40.0}})
        driver.get(console.url)
        assert until(driver, "document.querySelectorAll('.tile').length === 64", 20)
        assert driver.execute_script("return document.body.classList.contains('many')")
        columns = driver.execute_script(
            "return getComputedStyle(document.querySelector('#tiles')).gridTemplateColumns.split(' ').length;")
        assert columns >= 4, columns  # a grid at 1280 px, not a column
        driver.set_window_size(390, 844)  # a phone
        assert until(driver, "getComputedStyle(document.querySelector('#tiles')).gridTemplateColumns"
                             ".split(' ').length === 1", 10)
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1;"), \
            "the page is wider than a phone's screen"
    finally:
        driver.quit()
        console.stop()
