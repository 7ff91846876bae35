"""The operator's web console: a live page per stream, the event list, clips to play (docs: README)."""
