"""clipsearch: semantic image search on CLIP, with indexing, querying and fine-tuning.

Names are imported lazily so that `clipsearch --help` and decoding workers never pay
for importing torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "encoder",
    "Encoder": "encoder",
    "ImageError": "preprocess",
    "WeightsError": "weights",
    "Library": "library",
    "Filters": "search",
    "Result": "search",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'clipsearch' has no attribute {name!r}")
