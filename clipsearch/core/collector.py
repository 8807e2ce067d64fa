"""Python's cycle collector, paused while a process loads a model.

Importing torch and building a model make hundreds of thousands of objects and free
almost none, so the collections their allocations set off find nothing: a sixth of
torch's import and of a model's build (`python -c "import gc; gc.disable(); import
torch"` against without, interleaved). Paused there, it runs as before once the model
is loaded.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cycle collection within (a pause within a pause ends with the outer one)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
