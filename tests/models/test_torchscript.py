"""TorchScript archives are read as tensors, never run: code in a weights file does nothing."""

from __future__ import annotations

import zipfile

import pytest
import torch
from torch import Tensor, nn

from clipsearch.models.model import CLIP, CONFIGS
from clipsearch.models.torchscript import ArchiveError, read_tensors
from clipsearch.models.weights import WeightsError, resolve


class WritesAFileOnLoad(nn.Module):
    """What an attacker ships: TorchScript's __setstate__ runs on torch.jit.load, and
    torch.from_file(shared=True) creates any file the user can write."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.weight = nn.Parameter(torch.zeros(3))

    @torch.jit.export
    def __getstate__(self) -> tuple[str, Tensor, bool]:
        return (self.path, self.weight, self.training)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, Tensor, bool]) -> None:
        self.path = state[0]
        self.weight = state[1] + torch.from_file(self.path, shared=True, size=3)
        self.training = state[2]

    def forward(self, x: Tensor) -> Tensor:
        return x + self.weight


def traced_clip(path):
    model = CLIP(CONFIGS["tiny"]).eval()
    pixels, tokens = torch.randn(1, 3, 32, 32), torch.zeros(1, 77, dtype=torch.long)
    tokens[0, :2] = torch.tensor([49406, 49407])
    torch.jit.trace(model, (pixels, tokens), check_trace=False).save(str(path))
    return model


def test_tensors_equal_what_torch_jit_load_gives(tmp_path):
    traced_clip(tmp_path / "clip.pt")
    expected = torch.jit.load(str(tmp_path / "clip.pt")).state_dict()
    found = read_tensors(tmp_path / "clip.pt")
    assert list(found) == list(expected)
    assert all(torch.equal(found[k], expected[k]) for k in expected)


def test_an_archive_whose_setstate_writes_a_file_is_refused_and_writes_nothing(tmp_path):
    target = tmp_path / "written-by-the-archive"
    torch.jit.script(WritesAFileOnLoad(str(target))).save(str(tmp_path / "evil.pt"))
    with pytest.raises(WeightsError, match="custom state"):
        resolve(str(tmp_path / "evil.pt"))
    assert not target.exists()
    torch.jit.load(str(tmp_path / "evil.pt"))  # what loading it the usual way does
    assert target.exists()


def rewrite(path, name: str, data: bytes) -> None:
    with zipfile.ZipFile(path) as z:
        records = {n: z.read(n) for n in z.namelist()}
    records[name] = data
    with zipfile.ZipFile(path, "w") as z:
        for n, d in records.items():
            z.writestr(n, d)


def test_a_pickle_that_reaches_for_other_code_is_refused(tmp_path):
    traced_clip(tmp_path / "clip.pt")
    payload = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R."
    rewrite(tmp_path / "clip.pt", "clip/data.pkl", payload)
    with pytest.raises(ArchiveError, match="os.system"):
        read_tensors(tmp_path / "clip.pt")


def test_a_storage_shorter_than_declared_is_refused(tmp_path):
    traced_clip(tmp_path / "clip.pt")
    rewrite(tmp_path / "clip.pt", "clip/data/0", b"\x00" * 8)
    with pytest.raises(ArchiveError, match="storage 0"):
        read_tensors(tmp_path / "clip.pt")
