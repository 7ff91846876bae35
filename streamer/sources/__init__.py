"""Where frames enter: the source table (kinds and how to open them), one capture thread per source,
and the generated sources (test pattern, synthetic actions)."""
