"""Where results leave: message builders (the wire protocol), the ZeroMQ publisher, the snapshot
socket for late joiners and CURVE security."""
