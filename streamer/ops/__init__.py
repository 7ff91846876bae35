"""Operator features fed by what the publisher sent: action events, Prometheus metrics, the
annotated video and the terminal status line."""
