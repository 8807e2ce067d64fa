"""What a store holds, as `clipsearch status` and the server's /api/v1/status report it.

No torch: status answers from the catalog, the index files' names and the store's memos.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .images.formats import skipped_for_heif, skipped_for_raw
from .query.precision import Verdict
from .storage.catalog import Catalog
from .storage.catalog_indexes import stored_params, stored_recall
from .storage.recall import Recall
from .storage.vector_indexes import VectorIndexes


@dataclass
class IndexStatus:
    """A model's vector index as built: how and when, and whether it lags the catalog."""

    preset: str
    factory: str
    count: int
    params: dict
    built_at: str  # ISO 8601, UTC
    tombstones: int
    stale: bool  # changes committed since: replayed in memory by a query, saved by a writer
    file: str | None  # None: missing (rebuilt from the catalog when next needed)
    recall: Recall | None  # recall@10 per query set when last measured


@dataclass
class ModelStatus:
    name: str
    architecture: str
    digest: str
    dim: int
    vectors: int
    index: IndexStatus | None
    query_precision: Verdict | None  # the store's check of faster text towers, if made


@dataclass
class FailedFile:
    path: str
    reason: str


@dataclass
class Camera:
    name: str  # make and model
    photos: int


@dataclass
class StatusReport:
    store: str
    catalog: str
    files_ok: int
    files_failed: int
    models: list[ModelStatus]
    failed: list[FailedFile]
    heif_skipped: int
    raw_skipped: int  # RAW files without a preview, for lack of rawpy
    cameras: list[Camera]  # the ten that took the most photos
    placed: int  # photos with a GPS position

    def to_dict(self) -> dict:
        """The JSON shape of `status --json`."""
        d = asdict(self)
        d["files"] = {"ok": d.pop("files_ok"), "failed": d.pop("files_failed")}
        return d


def index_status(catalog: Catalog, indexes: VectorIndexes, model_id: int) -> IndexStatus | None:
    row = catalog.indexes.row(model_id)
    if row is None:
        return None
    file = indexes.file_for(row)
    exists = file is not None and file.exists()
    return IndexStatus(
        preset=row.preset,
        factory=row.factory,
        count=row.count,
        params=stored_params(row) or {},
        built_at=row.built_at.isoformat(),
        tombstones=row.tombstones,
        stale=(not exists) or catalog.vectors.log_position(model_id) > row.log_seq,
        file=file.name if exists else None,
        recall=stored_recall(row),
    )


def report(
    catalog: Catalog, indexes: VectorIndexes, store: str, precision_verdicts: dict[str, Verdict]
) -> StatusReport:
    files = catalog.files.counts()
    models = [
        ModelStatus(
            name=m.name,
            architecture=m.architecture,
            digest=m.digest,
            dim=m.dim,
            vectors=n,
            index=index_status(catalog, indexes, m.id),
            query_precision=precision_verdicts.get(m.digest),
        )
        for m, n in catalog.models.counted()
    ]
    failed = catalog.files.failed()
    return StatusReport(
        store=store,
        catalog=catalog.shown,
        files_ok=files.get("ok", 0),
        files_failed=files.get("failed", 0),
        models=models,
        failed=[FailedFile(f.path, f.error or "") for f in failed],
        heif_skipped=sum(1 for f in failed if skipped_for_heif(f.error)),
        raw_skipped=sum(1 for f in failed if skipped_for_raw(f.error)),
        cameras=[Camera(name, n) for name, n in catalog.files.cameras()],
        placed=catalog.files.placed(),
    )
