"""Fine-tune a TimeSformer on your own labeled clips: ``python -m model.finetune --data DIR --out DIR``.

* :mod:`model.finetune.dataset` finds the clips (``train/<label>/*.mp4`` + ``val/<label>/*.mp4``, or a CSV);
* :mod:`model.finetune.cache` decodes each clip once into windows sampled exactly as the streamer samples
  them (:mod:`model.sampling`), through the checkpoint's own preprocessing;
* :mod:`model.finetune.bases` builds a new network (``scratch:tiny|small|base``) or loads any checkpoint,
  replaces its head for the data's labels and says what stays fixed (``--freeze``, ``--prior``);
* :mod:`model.finetune.augment` flips and reverses clips only as the data's declared label maps allow;
* :mod:`model.finetune.loop` trains (deterministic for a seed and thread count, resumable per epoch);
* :mod:`model.finetune.run` ties them together and writes a Hugging Face folder plus ``training.json``.
"""
