"""What a vector index finds of what exact search finds: recall@10 per query set, with the
search parameters that reached it and when it was measured. Kept in the catalog's index
row, shown by `status`, and what tuning aims at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from ..core.prompts import AGREEMENT_TARGET


@dataclass
class Recall:
    """Recall@10 against exact search per query set, with the parameters and the date."""

    measured_at: str  # ISO 8601, UTC
    params: dict
    sets: dict[str, float]
    target: float = AGREEMENT_TARGET

    @property
    def below(self) -> list[str]:
        return [name for name, r in self.sets.items() if r < self.target]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> Recall | None:
        try:
            return cls(str(data["measured_at"]), dict(data["params"]), dict(data["sets"]))
        except (KeyError, TypeError, ValueError):
            return None
