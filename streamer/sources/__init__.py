"""Where frames enter: the source table (kinds and how to open them), one capture thread per source
and its read loop, PyAV decoding of files, the camera check, the capture of native library output,
and the generated sources (test pattern, synthetic actions)."""
