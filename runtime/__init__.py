"""The lean runtime: medical image I/O, preprocessing, fusion metrics and the executor.

This package is the base of medfuse and never imports torch (tests/test_packaging.py, tests/test_run_lean.py).
Import submodules directly (`from medfuse.runtime.preprocess import PreprocessConfig`);
nothing heavy is imported here so that `medfuse-run --help` starts fast.
"""
