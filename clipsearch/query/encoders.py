"""The models a Library answers with: which one a store's queries use when none is named,
each loaded once, and which tower reads a query's words.

A query's words may be read by a text tower aligned to the store's model (`train
--distill-text`, remembered by the store for that model), and on a CPU under precision
auto by a faster tower where the store shows that it finds what fp32 finds (precision.py).
Where the store keeps the model's text tower exported for ONNX Runtime (onnx_text.py), a
Library that has not loaded the model reads text queries with it, and imports no torch.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core import collector
from ..core.errors import FallbackWarning
from ..core.memo import MemoFile, user_cache
from ..models.pretrained import DEFAULT_MODEL
from ..storage.database import State
from ..storage.layout import PRECISION_CHECKS_FILE, TEXT_MODELS_FILE
from ..storage.schema import Model
from ..storage.store import Store
from .precision import PrecisionChecks, TextTowers
from .search import QueryError

if TYPE_CHECKING:  # torch loads with the first model, not with `status` or `forget`
    from ..models.encoder import Encoder
    from ..models.onnx_text import OnnxTextTower

# (top-10 file ids of a query vector, vectors searched) in a store's index, for a model
TopIds = Callable[["Encoder"], tuple[Callable[[np.ndarray], Sequence[int]], int]]


class Encoders:
    def __init__(
        self,
        store: Store,
        top_ids: TopIds,
        device: str | None = None,
        precision: str = "auto",
        text_model: str | None = None,
    ):
        self.store = store
        self.catalog = store.catalog
        self.device = device
        self.precision = precision
        self.text_model = text_model
        self.text_models = MemoFile(store.path / TEXT_MODELS_FILE)
        self._text_model_remembered = False
        self._loaded: dict[str, Encoder] = {}
        self._onnx_asked: set[str] = set()  # specs whose exported tower was looked for
        self._model_rows: dict[str, Model] = {}
        self._default: str | None = None
        self.loads: list[tuple[str, str, bool]] = []  # (spec, precision, text only), in order
        self.top_ids = top_ids
        self.text_towers = TextTowers(
            PrecisionChecks(store.path / PRECISION_CHECKS_FILE),
            lambda spec, precision: self._load(spec, precision, text_only=True),
        )

    def default_model(self) -> str:
        """The store's only model if it has one, clipsearch's default if the store has
        none or has it among several; with several others, the caller must choose (and
        no model is looked for on the network in the meantime)."""
        have = self._models()
        names = [m.name for m, _ in have]
        if len(have) == 1:
            return names[0]
        if not have or DEFAULT_MODEL in names:
            return DEFAULT_MODEL
        listing = ", ".join(f"{m.name} ({n} vectors)" for m, n in have)
        raise QueryError(
            f"this store has vectors from several models: {listing}; pick one with --model"
        )

    def require_vectors(self) -> None:
        """Refuse a search of a store with no vectors before any model is loaded (or, for
        the default model, downloaded) only to find nothing to search."""
        if not self._models():
            raise QueryError(
                "this store has no indexed images yet; run `clipsearch index PATH` first"
            )

    def _models(self) -> list[tuple[Model, int]]:
        """The store's models that have vectors, with how many; none before its first
        write."""
        if self.catalog.state not in (State.CURRENT, State.OLDER):
            return []
        return self.catalog.models.with_vectors()

    def spec(self, spec: str | None) -> str:
        """The model asked for, else the store's default (found once)."""
        if spec is None:
            self._default = self._default or self.default_model()
            spec = self._default
        return spec

    def get(self, spec: str | None = None, text_only: bool = False) -> Encoder:
        """The model for a spec, loaded once; text_only (for text queries) leaves out the
        image tower until something needs it."""
        spec = self.spec(spec)
        loaded = self._loaded.get(spec)
        if loaded is None or (loaded.text_only and not text_only):
            self._loaded[spec] = self._load(spec, self.precision, text_only)
        return self._loaded[spec]

    def for_query(self, spec: str | None = None, text_only: bool = False) -> Encoder:
        """The model for a query. Under precision "auto" on a CPU, text queries start in
        fp32 and move to a faster tower where this store shows that it finds what fp32
        finds (precision.TextTowers)."""
        spec = self.spec(spec)
        if not (text_only and self._chooses_text_precision()):
            return self.get(spec, text_only)
        encoder = self._loaded.get(spec)
        if encoder is None:
            encoder = self._loaded[spec] = self._load(spec, "fp32", text_only=True)
        if not encoder.text_only or encoder.precision != "fp32":
            return encoder  # a whole model loaded for an image term, or the chosen tower
        faster = self.text_towers.after_query(spec, encoder, lambda: self.top_ids(encoder))
        if faster is not None:
            self._loaded[spec] = encoder = faster
        return encoder

    def _chooses_text_precision(self) -> bool:
        from ..models.encoder import resolve_device

        return self.precision == "auto" and resolve_device(self.device).type == "cpu"

    def _load(self, spec: str, precision: str, text_only: bool) -> Encoder:
        self.loads.append((spec, precision, text_only))
        with collector.paused():
            from ..models.encoder import load_model

            encoder = load_model(
                spec,
                device=self.device,
                precision=precision,
                text_only=text_only,
                digests=self.store.digests,
            )
        aligned = encoder.text_key != encoder.digest  # a text tower answers for another's
        if not aligned and self.store.model_digests.get(spec) != encoder.digest:
            self.store.model_digests.put(spec, encoder.source, encoder.digest)
        return encoder

    def known_digest(self, spec: str) -> str | None:
        """The digest the model loaded to last time, if nothing it was read from has
        changed since: which vectors are its, without loading it."""
        return self.store.model_digests.get(spec)

    def stored_row(self, spec: str | None = None) -> Model:
        """The catalog's row for a model, without loading it where the store knows its
        digest (a model it indexed with) or its name; else loaded to learn its digest."""
        spec = self.spec(spec)
        digest = self.known_digest(spec) or self._digest_of(spec)
        row = self.catalog.models.find(digest) if digest else None
        if row is not None and self.catalog.models.has_vectors(row.id):
            return row
        return self.model_row(self.get(spec))

    def model_row(self, encoder: Encoder) -> Model:
        """The catalog's row for the encoder's weights; an error naming the models that
        do have vectors here if it has none."""
        if encoder.digest in self._model_rows:
            return self._model_rows[encoder.digest]
        row = self.catalog.models.find(encoder.digest)
        if row is None or not self.catalog.models.has_vectors(row.id):
            have = self.catalog.models.with_vectors()
            listing = ", ".join(f"{m.name} ({n} vectors)" for m, n in have) or "none yet"
            raise QueryError(
                f"this store has no vectors from model {encoder.name} (weights "
                f"{encoder.digest}). Models here: {listing}. Use --model with one of them, or "
                f"index with this one: clipsearch index PATH --model {encoder.name}"
            )
        self._model_rows[encoder.digest] = row
        return row

    def text_reader(self, model: str | None = None) -> Encoder:
        """The encoder for a query's words: a text tower aligned to the model where one is
        given or remembered for it, else the model's own (for_query)."""
        spec = self.spec(model)
        digest = self._digest_of(spec)
        remembered = self.text_models.read().get(digest) if digest else None
        tower = remembered if self.text_model is None else self.text_model
        if tower in (None, "none"):
            self._remember_text_model(digest, None)
            return self._onnx_tower(spec) or self.for_query(spec, text_only=True)
        reader = self.for_query(tower, text_only=True)
        if digest and reader.digest != digest:
            raise QueryError(
                f"the text tower {tower} reads for the model with digest {reader.digest}, not "
                f"for {spec} ({digest}): give --text-model one made from it (train "
                f"--distill-text --from {spec}), or none"
            )
        self._remember_text_model(digest, tower)
        return reader

    def _onnx_tower(self, spec: str) -> OnnxTextTower | None:
        """The model's text tower exported for ONNX Runtime, where the store has it, for
        this Library's first text query of the model: a process that asks once (the CLI)
        then imports no torch. From the second query on torch answers, loaded then: its
        packed, traced, perhaps quantised tower is 2-5x faster per query than ONNX
        Runtime's as opened here for a quick start (BENCHMARKS.md, "A cold query, part by
        part"). Only where it reads what the model would read here: on the CPU, under
        precision auto or fp32."""
        if (
            spec in self._loaded
            or spec in self._onnx_asked
            or self.device not in (None, "auto", "cpu")
            or self.precision not in ("auto", "fp32")
        ):
            return None
        self._onnx_asked.add(spec)
        return self._open_onnx_tower(spec)

    def _open_onnx_tower(self, spec: str) -> OnnxTextTower | None:
        from ..models import onnx_text

        folder = self._onnx_folder(spec)
        if folder is None or not folder.is_dir() or not onnx_text.can_run():
            return None
        try:
            tower = onnx_text.OnnxTextTower(folder, spec, folder.name)
            onnx_text.used(folder)
            return tower
        except Exception as e:  # ONNX Runtime's errors share no base class but Exception
            reason = " ".join(str(e).split())[:200]
            warnings.warn(
                f"the model's exported text tower in {folder} could not be opened ({reason}); "
                "torch read the query instead. Delete that folder and the next query makes "
                "it again",
                FallbackWarning,
                stacklevel=2,
            )
            return None

    def _onnx_folder(self, spec: str) -> Path | None:
        """Where the model's exported text tower is (or would be) kept: by the digest the
        spec loaded to last time, while none of its files has changed; in the store where
        an earlier clipsearch put it there, else in the user's cache."""
        from ..models import onnx_text

        digest = self.known_digest(spec)
        in_store = onnx_text.folder_for(self.store.path, digest) if digest else None
        if in_store is None or in_store.is_dir():
            return in_store
        return onnx_text.folder_for(user_cache(), digest)

    def export_text_tower(
        self,
        spec: str | None = None,
        load: bool = True,
        on_start: Callable[[], None] | None = None,
    ) -> Path | None:
        """Export the model's text tower for ONNX Runtime into the user's cache, once per
        model digest (onnx_text.py), so that later queries need no torch; its folder, or
        None where it cannot be made (no `onnxruntime`, random weights or a model other
        than clipsearch's CLIP, a GPU asked for, a cache folder this user cannot write,
        or the check failed). With load False,
        only a model this Library has loaded already is exported (None where it has loaded
        none, at no cost: the CLI asks after every query and index run); on_start is called
        before the export's few seconds begin."""
        spec = self.spec(spec)
        encoder = self._loaded.get(spec)
        if encoder is None and not load:
            return None  # a query the tower read, an index run that embedded nothing
        from ..models import onnx_text

        folder = self._onnx_folder(spec)
        if folder is not None and folder.is_dir():
            return folder
        on_cpu = self.device in (None, "auto", "cpu")
        if not (on_cpu and onnx_text.can_run() and onnx_text.can_keep(user_cache())):
            return None
        if encoder and (encoder.device.type != "cpu" or not onnx_text.exportable_kind(encoder)):
            return None  # a GPU, which answers queries too; or no tower to export
        if encoder is None or not onnx_text.exportable(encoder):
            encoder = self._load(spec, "fp32", text_only=True)
        folder = self._onnx_folder(spec)  # the digest is known once the model has loaded
        if folder is None or not onnx_text.exportable(encoder):
            return None
        if on_start is not None:
            on_start()
        return folder if onnx_text.export(encoder, folder) else None

    def _remember_text_model(self, digest: str | None, tower: str | None) -> None:
        """A text model given to this Library is remembered for the model (once)."""
        if self.text_model is None or not digest or self._text_model_remembered:
            return
        entries = {k: v for k, v in self.text_models.read().items() if k != digest}
        self.text_models.write({**entries, **({digest: os.path.abspath(tower)} if tower else {})})
        self._text_model_remembered = True

    def _digest_of(self, spec: str) -> str | None:
        """The digest of the store's model of that name, without loading it."""
        return next((m.digest for m, _ in self._models() if m.name == spec), None)
