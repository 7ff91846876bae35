"""The streaming pipeline, by layer (where a frame enters, where it is judged, where results leave):

- ``streamer.sources``: video sources as a table of kinds, the capture thread per source, the test
  pattern and the synthetic action renderer (frames enter here);
- ``streamer.core``: per-source rings, sliding windows, the fair batch scheduler, the device stage,
  the model runner and the inference thread (windows are judged here);
- ``streamer.outputs``: the wire protocol, the ZeroMQ publisher, the snapshot socket, CURVE security
  (results leave here);
- ``streamer.ops``: what operators use on top of the published messages: events, metrics, the
  annotated video, the status line.

``streamer.config`` (the validated, frozen configuration), ``streamer.pipeline`` (build, run, shut
down), ``streamer.subscribe`` and ``streamer.keys`` (client CLIs) sit at the top. Importing the
package changes nothing in the process: the CLI entry sets the OpenCV environment
(:func:`streamer.sources.cvenv.prepare_opencv_environment`). Heavy modules are imported where used.

Tags such as ``(R19)`` or ``(S6)`` in comments name a reliability or security property: what each
means, where it is kept and the test that shows it are in docs/RELIABILITY.md; the frame's path
through these modules, hop by hop, is in docs/ARCHITECTURE.md.
"""
