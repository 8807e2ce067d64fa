"""clipsearch: semantic image search on CLIP, with indexing, querying and fine-tuning.

The folders are the map. Each floor imports only from the floors below it, and a module
only from its own folder on its own floor (tests/test_layers.py holds the code to this):

    cli/                          the command line, a thin face over the Library
    server/                       `clipsearch serve`: the JSON API and the search page
    watching/                     a store that keeps itself current (`watch`, `serve --watch`)
    library status                the Python API every face calls; what a store holds
    indexing/ query/ training/    fill a store; answer queries; make models
    storage/ models/              the catalog and its vector indexes; CLIP and its weights
    images/                       image files and the data files that name them
    core/                         errors, settings, atomic files, memos, fault injection

torch is imported from models/ up, and only where a model is loaded: importing
clipsearch, `status`, `forget` and the decoding workers never import it, which is why
the names below are exported lazily.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "models.encoder",
    "Encoder": "models.encoder",
    "ImageError": "images.decode",
    "WeightsError": "core.errors",
    "Library": "library",
    "Filters": "query.search",
    "Result": "query.search",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'clipsearch' has no attribute {name!r}")
