"""Helpers for the tests (tests/) and the benchmarks (benchmarks/) that run the real thing: processes,
ports, a tiny model, real RTSP servers. Nothing in the streamer itself imports this package.

- :mod:`streamer.testing.processes`: ``run_stream.py`` and a recording subscriber in their own
  processes, free loopback addresses, a tiny random TimeSformer, sample videos.
- :mod:`streamer.testing.rtsp`: the GStreamer RTSP server (``rtsp_server.py``, run under the system
  python), a black-hole listener, a refused URL.
- ``python -m streamer.testing.frozen_subscriber ADDRESS --pause S``: a subscriber that stops reading.
"""
