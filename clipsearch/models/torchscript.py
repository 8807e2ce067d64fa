"""The tensors of a TorchScript archive (OpenAI's released CLIP .pt files), read without
running it.

`torch.jit.load` runs code from the archive: a module's TorchScript `__setstate__` is
called on load, and TorchScript can create or overwrite files (`torch.from_file(path,
shared=True)`). So the archive is read as the zip of records it is instead: `data.pkl`
through an unpickler that knows only tensors, ordered dicts and inert stand-ins for the
archive's module classes, each storage from its own record, and which attributes are
parameters or buffers from the class declarations in `code/` (read as text, never run).
A module that keeps custom state (what a `__setstate__` would consume) is refused.
"""

from __future__ import annotations

import ast
import io
import pickle
import re
import zipfile
from collections import OrderedDict
from pathlib import Path

import torch

STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class ArchiveError(ValueError):
    """An archive that cannot be read as plain tensors; the message says why."""


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


class ScriptObject:
    """A stand-in for one of the archive's classes: it only keeps the state it is given."""

    qualified_name = ""
    state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class Held:
    """A tensor or storage as the unpickler hands it around: pickle's BUILD cannot reach
    the tensor's own `__setstate__` through it."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor

    def __setstate__(self, state: object) -> None:
        raise ArchiveError("it sets state on a tensor")


def _rebuild_tensor(storage: Held, offset: int, size, stride, *_ignored) -> Held:
    """A view of a storage; torch refuses one that reaches outside it."""
    if not isinstance(storage, Held):
        raise ArchiveError("a tensor without a storage")
    return Held(storage.tensor.as_strided(tuple(size), tuple(stride), offset))


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.prefix = prefix
        self.classes: dict[str, type] = {}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            qualified = f"{module}.{name}"
            if qualified not in self.classes:
                self.classes[qualified] = type(name, (ScriptObject,), {"qualified_name": qualified})
            return self.classes[qualified]
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return STORAGE_DTYPES[name]
        raise ArchiveError(f"it refers to {module}.{name}, which a weights file has no need of")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise ArchiveError(f"unexpected persistent record {pid!r:.60}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype) or not re.fullmatch(r"\w+", str(key)):
            raise ArchiveError(f"unexpected storage record {pid!r:.60}")
        try:
            raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        except KeyError:
            raise ArchiveError(f"storage {key} is missing") from None
        flat = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        if flat.numel() != numel:
            raise ArchiveError(f"storage {key} holds {flat.numel()} values, not {numel}")
        return Held(flat)


_CLASS = re.compile(
    r"^class (\w+)\(Module\):\n  __parameters__ = (\[.*?\])\n  __buffers__ = (\[.*?\])\n",
    re.MULTILINE,
)


def _declared_tensors(archive: zipfile.ZipFile, prefix: str, qualified: str) -> list[str]:
    """The parameter and buffer names a module class declares in the archive's code."""
    module, _, name = qualified.rpartition(".")
    source = f"{prefix}code/{module.replace('.', '/')}.py"
    try:
        code = archive.read(source).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        raise ArchiveError(f"no declaration of {qualified}") from None
    for m in _CLASS.finditer(code):
        if m.group(1) == name:
            try:
                return [*ast.literal_eval(m.group(2)), *ast.literal_eval(m.group(3))]
            except (ValueError, SyntaxError):
                break
    raise ArchiveError(f"no module declaration of {qualified}")


def _collect(
    obj: ScriptObject, archive: zipfile.ZipFile, prefix: str, path: str, out: dict
) -> None:
    if not isinstance(obj.state, dict):
        raise ArchiveError(
            f"{obj.qualified_name} keeps custom state, restored by code that runs on load"
        )
    for name in _declared_tensors(archive, prefix, obj.qualified_name):
        value = obj.state.get(name)
        if isinstance(value, Held):
            out[path + name] = value.tensor
    for name, value in obj.state.items():
        if isinstance(value, ScriptObject):
            _collect(value, archive, prefix, f"{path}{name}.", out)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The module's state dict (parameters and buffers by dotted name), as
    `torch.jit.load(path).state_dict()` would give it, without running anything."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise ArchiveError("no single data.pkl at the top of the archive")
        prefix = pickles[0][: -len("data.pkl")]
        try:
            root = _Unpickler(archive.read(pickles[0]), archive, prefix).load()
        except ArchiveError:
            raise
        except Exception as e:  # malformed pickle data
            raise ArchiveError(f"data.pkl cannot be read: {type(e).__name__}: {e}") from None
        if not isinstance(root, ScriptObject):
            raise ArchiveError("data.pkl does not hold a module")
        out: dict[str, torch.Tensor] = {}
        _collect(root, archive, prefix, "", out)
        return out
