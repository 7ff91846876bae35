"""Helpers for the tests (tests/) and the benchmarks (benchmarks/) that run the real thing: processes,
ports, a tiny model, real RTSP servers. Nothing in the streamer itself imports this package.

- :mod:`streamer.testing.processes`: ``run_stream.py`` and a recording subscriber in their own
  processes, free loopback addresses, a tiny random TimeSformer, sample videos.
- :mod:`streamer.testing.rtsp`: the GStreamer RTSP server (``rtsp_server.py``, run under the system
  python), a black-hole listener, a refused URL.
- :mod:`streamer.testing.media`: media made by ffmpeg (clips, a corrupt mp4, a TS of two sizes) and an
  HTTP MJPEG camera at a chosen frame rate.
- :mod:`streamer.testing.zmtp`: a raw ZMTP peer and the socket attacks made with it (oversized
  subscriptions, a snapshot request of 25,000 frames).
- ``python -m streamer.testing.frozen_subscriber ADDRESS --pause S``: a subscriber that stops reading.
- ``python -m streamer.testing.snapshot_flood ADDRESS [--rate R --seconds S]``: a snapshot-request flood.
"""
