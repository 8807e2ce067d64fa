"""clipsearch: semantic image search on CLIP, with indexing, querying and fine-tuning.

The package in layers, each calling only those below it (torch only from "model" up;
`status`, `forget` and the decoding workers never import it):

  faces      cli (typer; prints, exits; render: output formats) and server (HTTP API and
             the page in web/) -> library (the API every face calls: Library)
  work       indexer + decoding + scan + sources (walk folders, tar shards and list files,
             decode in workers, embed, commit; ray_pipeline schedules the same decoding
             and embedding on Ray Data, the indexer still the only writer), search (query
             terms, filtered exact search, hydrate), query_precision (which text tower a
             store's queries use), status (what a store holds), train + training_data +
             evaluate (contrastive training, recall metrics), distill (text towers that
             read other languages)
  storage    store (the folder, the writer lock) -> catalog (the only SQL; the source of
             truth) and ann (FAISS indexes derived from it; presets in indexes/), tuned
             by tuning on query sets that include query_log's, measured against exact;
             synthetic (vectors no image made, for tests and benchmarks)
  model      encoder (load_model: texts and images in, unit vectors out) -> model (CLIP),
             tokenizer, weights + torchscript + pretrained + hub (every checkpoint format
             and hub layout, read without running code), open_clip_models (the optional
             backend for models only open_clip builds: SigLIP, MobileCLIP, XLM-R),
             cpu_text (the fast CPU text tower)
  images     preprocess (decode, CLIP pixels)
  basics     errors, faults, files (atomic writes), content (file hashes), items (an item's
             key: a path, a tar shard's member or a URL, and its bytes), prompts,
             precisions, config (settings, each declared once), memo + digests (the
             store's small JSON memos), priority (indexing that yields to searches)

Names are imported lazily so that `clipsearch --help` and decoding workers never pay
for importing torch.
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
