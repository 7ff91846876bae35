"""Operating a running monitor: add, remove and change sources while it runs (issue 21).

- :mod:`streamer.control.api`: the operations (:class:`SourceService`), transport-neutral.
- :mod:`streamer.control.requests`: one JSON request -> one service call -> one JSON reply.
- :mod:`streamer.control.server`: the control socket (ZeroMQ ROUTER serving REQ clients).
- :mod:`streamer.control.client`: :class:`Client`, the Python side of the socket (``python -m streamer.ctl``).
- :mod:`streamer.control.state_file`: the running set written atomically, read back at start (R24).
"""

from streamer.control.api import DEFAULT_ADDRESS, SourceService
from streamer.control.client import Client

__all__ = ["Client", "SourceService", "DEFAULT_ADDRESS"]
