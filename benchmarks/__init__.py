"""The project's benchmark scripts: each one a module, run from the repository root as
``python -m benchmarks.NAME`` (``python -m benchmarks.bench_pipeline --smoke``), so it imports the
checkout's ``streamer`` and ``model`` packages and its sibling modules (``benchmarks.report``,
``benchmarks.harness``) without touching ``sys.path``. Test helpers come from ``streamer.testing``.
"""
