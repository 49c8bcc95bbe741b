"""Helpers several test files share; tests import them as `from helpers import ...`.

(pytest puts this folder on sys.path: tests/ has a conftest.py and no __init__.py, and the
default import mode is "prepend".)

`random_batch`, a Batch with random sparse targets, is defined once, in the losses benchmark,
which measures on it; the tests reuse that definition (tests may import from vqa.bench, never
the reverse), through here so that no test depends on where the benchmark keeps it.
"""

from __future__ import annotations

from vqa.bench.losses import random_batch

__all__ = ["random_batch"]
