"""Where windows are judged: rings of preprocessed frames, window sampling, the fair batch scheduler,
the device stage, the model runner, the inference thread and the per-stream counters."""
