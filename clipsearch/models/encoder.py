"""The model as the rest of clipsearch uses it: texts and images in, unit vectors out."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterator, Sequence
from enum import Enum
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.cpu import free_cores
from ..core.errors import ClipsearchError
from ..core.memo import DigestCache
from ..images.decode import ImageSource
from ..images.pixels import Preprocessing, preprocess
from . import cpu_text, mobileclip, onednn
from .model import CLIP
from .open_clip_models import is_open_clip_config
from .precisions import CANDIDATES, PRECISIONS
from .pretrained import DEFAULT_MODEL
from .tokenizer import Tokenizer, cut_to_longest, default_tokenizer, encode_in_batches
from .weights import resolve, save_weights

FEW_TEXTS = 8  # a query's, as against a batch of prompts or captions


def native_bf16() -> bool:
    """bf16 matmuls in hardware (AVX512-BF16 or AMX). Without them torch emulates bf16 and
    a ViT-B/32 runs several times slower than fp32 (BENCHMARKS.md). CLIPSEARCH_NATIVE_BF16=0 or 1
    overrides the answer: to keep fp32 on such a CPU, and for tests of both kinds on one."""
    forced = os.environ.get("CLIPSEARCH_NATIVE_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def cpu_fp16_weights() -> bool:
    """FBGEMM (x86) keeps linear weights in fp16 and computes in fp32 (quantize_dynamic's
    float16): half the bytes to read, fp32's arithmetic. Elsewhere fp16 on a CPU is
    torch's half-precision arithmetic."""
    return any(e in torch.backends.quantized.supported_engines for e in ("x86", "fbgemm"))


def reduced_precisions() -> tuple[str, ...]:
    """The candidates for a CPU text query (precisions.CANDIDATES, fastest first)
    that this torch and CPU run faster than fp32."""
    runs = {
        "int8": torch.backends.quantized.engine != "none",
        "fp16": cpu_fp16_weights(),
        "bf16": native_bf16(),
    }
    return tuple(p for p in CANDIDATES if runs[p])


def auto_precision(device: torch.device) -> str:
    """fp16 on CUDA; bf16 on CPUs with native bf16; fp32 otherwise. This is what images are
    embedded in. Text queries on a CPU start in fp32 instead and move to a faster tower only
    where the store's check passes (query/precision.py): a query's few rows gain little
    from bf16, and its rounding can reorder a crowded store."""
    if device.type == "cuda":
        return "fp16"
    return "bf16" if native_bf16() else "fp32"


class DeviceError(ClipsearchError, ValueError):
    """A device this torch cannot run on."""


class PrecisionError(ClipsearchError, ValueError):
    """A precision that does not exist, or that this device cannot run."""


def resolve_device(device: str | None) -> torch.device:
    """auto (CUDA if there is one, else the CPU), cpu, cuda or cuda:N, checked."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError:
        raise DeviceError(f"unknown device {device!r}; use auto, cpu or cuda") from None
    if chosen.type not in ("cpu", "cuda"):
        raise DeviceError(f"device {device!r} is not supported; use auto, cpu or cuda")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"--device {device}: this torch sees no CUDA GPU (a CPU build, or no driver); use "
            "--device cpu, or install torch's CUDA build (README, Install)"
        )
    if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
        raise DeviceError(f"--device {device}: there are {torch.cuda.device_count()} GPUs")
    return chosen


def weights_digest(model: nn.Module) -> str:
    """sha256 of every tensor's name, shape and fp32 bytes: equal weights, equal digest,
    whatever file format or storage dtype they came from."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().float().contiguous().cpu()
        h.update(f"{key}:{tuple(t.shape)}".encode())
        h.update(memoryview(t.numpy()).cast("B"))  # no copy of the weights
    return h.hexdigest()[:16]


def model_digest(weights: str, preprocessing: Preprocessing) -> str:
    """What ties vectors to the model that made them: its weights and, where they are not
    OpenAI's, its preprocessing (the same weights fed other pixels make other vectors)."""
    if preprocessing.is_openai:
        return weights
    recipe = json.dumps(preprocessing.to_dict(), sort_keys=True).encode()
    return f"{weights}-{hashlib.sha256(recipe).hexdigest()[:8]}"


def dynamic_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """quantize_dynamic's dtype where a precision means dynamic quantisation: int8, and fp16
    on a CPU with FBGEMM (fp16 weights, fp32 arithmetic); None where it does not."""
    if precision == "int8":
        return torch.qint8
    if precision == "fp16" and device.type == "cpu" and cpu_fp16_weights():
        return torch.float16
    return None


def _apply_precision(
    model: nn.Module, precision: str, device: torch.device, in_place: bool
) -> nn.Module:
    dtype = dynamic_dtype(precision, device)
    if dtype is not None:
        if device.type != "cpu":
            raise PrecisionError("int8 (dynamic quantisation) runs on CPU only; use --device cpu")
        with warnings.catch_warnings():  # deprecated for torchao, still the stock CPU path
            warnings.simplefilter("ignore")
            from torch.ao.nn.quantized.dynamic import Linear as QuantizedLinear
            from torch.ao.quantization import quantize_dynamic

            model = quantize_dynamic(model, {nn.Linear}, dtype=dtype, inplace=in_place)
        for layer in model.modules():  # open_clip asks its first text layer for the dtype of
            if isinstance(layer, QuantizedLinear):  # its weight, a method once quantised
                layer.int8_original_dtype = torch.float32
        return model
    if precision == "bf16":
        return model.to(torch.bfloat16)
    if precision == "fp16":
        return model.to(torch.float16)
    if precision != "fp32":
        raise PrecisionError(f"precision must be one of {', '.join(PRECISIONS)}")
    return model


def text_tokenizer(model: nn.Module) -> Tokenizer:
    """OpenAI's BPE for clipsearch's own CLIP; for a model open_clip built, the tokenizer
    open_clip pairs with it (SigLIP's and XLM-R's are their own)."""
    return model.config.tokenizer() if is_open_clip_config(model.config) else default_tokenizer()


def trims_padding(model: nn.Module) -> bool:
    """Whether a batch of token ids may be cut to its longest text: in clipsearch's CLIP
    (causal mask, pooled at end-of-text) padding never reaches the output; other towers
    (SigLIP pools the last position) need the whole context."""
    return isinstance(model, CLIP)


def input_dtype(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the image tower's weights are in, which its pixels must match."""
    if dynamic_dtype(precision, device) is not None:
        return torch.float32
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)


class TextPath(Enum):
    """How the text tower runs. On a CPU, in fp32, it runs as built for its first call, is
    packed on its second and traced on its third: a process that asks once, like the CLI,
    pays for neither (packing and the packed ops' first run cost ~100 ms more than a plain
    query, which the queries after make up for). Quantised, it is packed on its first call
    (which quantises the in-projection: every vector alike) and traced on its second."""

    PLAIN = "the modules as built (no fast CPU path here)"
    FIRST = "the next text call runs as built, and the one after packs"
    TO_PACK = "the next text call packs the weights"
    TO_TRACE = "the next text call traces the packed tower"
    PACKED = "packed, run eagerly (the trace failed or disagreed)"
    TRACED = "packed and traced into TorchScript"


class Encoder:
    """A loaded CLIP with its tokenizer and preprocessing, in inference mode.

    `.name` says where the weights came from, `.dim` the vector size, and `.digest` ties
    every vector in a catalog to the exact weights that made it.
    """

    source: Path | None = None  # the weights file, where they came from one

    def __init__(
        self,
        model: nn.Module,
        name: str,
        device: str | None = None,
        precision: str = "fp32",
        tokenizer: Tokenizer | None = None,
        digest: str | None = None,
        owns_model: bool = False,
        aligned: bool = False,
    ):
        model = model.eval()
        if model.visual is None and digest is None:
            raise ValueError("a text-only model needs the digest of its full weights")
        self.name = name
        self.config = model.config
        self.dim = model.config.embed_dim
        self.preprocessing = model.config.pixels
        self.image_size = self.preprocessing.size
        self.text_only = model.visual is None
        if aligned:  # a text tower aligned to an image model answers for that model's vectors
            self.digest = digest
            self.text_key = f"{digest}/text:{weights_digest(model)}"
        else:
            self.digest = model_digest(digest or weights_digest(model), self.preprocessing)
            self.text_key = self.digest  # what its text vectors are remembered by
        self.device = resolve_device(device)
        self._mean = torch.tensor(self.preprocessing.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.preprocessing.std, device=self.device).view(1, 3, 1, 1)
        self.precision = auto_precision(self.device) if precision == "auto" else precision
        # A model handed over (load_model's) may be changed in place: quantised without a
        # copy, its text tower packed, MobileCLIP's branches fused. A caller's model, perhaps
        # still in training, is not.
        self.fused = owns_model and mobileclip.fusable(model)
        if self.fused:
            model = mobileclip.fuse(model)
        self.model = _apply_precision(
            model.to(self.device), self.precision, self.device, in_place=owns_model
        )
        self._tokenizer = tokenizer
        self._dynamic = dynamic_dtype(self.precision, self.device)
        self._trim = cut_to_longest if trims_padding(model) else np.asarray
        self._pixels_dtype = input_dtype(self.precision, self.device)
        fast_cpu_text = (
            isinstance(model, CLIP)
            and owns_model
            and self.device.type == "cpu"
            and onednn.available()
            and (self.precision == "fp32" or self._dynamic is not None)
        )
        # fp32 only: quantised, the as-built tower's in-projection would not be quantised yet
        first = TextPath.FIRST if self._dynamic is None else TextPath.TO_PACK
        self.text_path = first if fast_cpu_text else TextPath.PLAIN
        self._traced = None
        self.texts_encoded = 0  # texts this encoder has run its text tower on

    @property
    def tokenizer(self) -> Tokenizer:
        """Made on first use: indexing never needs it, and a model's own tokenizer (SigLIP's,
        XLM-R's) may have to be fetched from the hub."""
        if self._tokenizer is None:
            self._tokenizer = text_tokenizer(self.model)
        return self._tokenizer

    @property
    def text_as_built(self) -> bool:
        """Whether the text tower is still the model's own modules in fp32, neither
        quantised nor packed nor traced: what an export of it must read."""
        return self.precision == "fp32" and self.text_path in (
            TextPath.PLAIN,
            TextPath.FIRST,
            TextPath.TO_PACK,
        )

    @property
    def architecture(self) -> str:
        return self.config.architecture

    @torch.inference_mode()
    def encode_tokens(self, tokens: np.ndarray) -> np.ndarray:
        """Token ids (n, ≤ context) -> unit vectors; for clipsearch's CLIP the batch is cut
        to its longest text first (trims_padding)."""
        if len(tokens) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        t = torch.from_numpy(self._trim(tokens)).to(self.device)
        self.texts_encoded += len(tokens)
        if self.text_path is TextPath.TRACED:
            return self._unit(self._traced(t))
        if self.text_path is TextPath.FIRST:
            self.text_path = TextPath.TO_PACK
        elif self.text_path is TextPath.TO_PACK:
            cpu_text.pack_text_tower(self.model, self._dynamic)
            self.text_path = TextPath.TO_TRACE
            return self._unit(self.model.encode_text(t))
        y = self.model.encode_text(t)
        if self.text_path is TextPath.TO_TRACE:
            self._traced = cpu_text.trace_text_tower(self.model, t, y)
            self.text_path = TextPath.PACKED if self._traced is None else TextPath.TRACED
        return self._unit(y)

    def warm_up_text(self) -> None:
        """Pack and trace the text tower now, for a caller about to ask many queries: one
        pause now instead of one at each of the next two queries."""
        while self.text_path in (TextPath.FIRST, TextPath.TO_PACK, TextPath.TO_TRACE):
            self.encode_text(["a photo of a dog"])

    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """Texts -> float32 (n, dim), L2-normalised. Over-long text is truncated with a
        TruncationWarning."""
        with self._threads_for(len(texts)):
            return encode_in_batches(
                texts, self.tokenizer, self.encode_tokens, self.dim, batch_size
            )

    @contextlib.contextmanager
    def _threads_for(self, texts: int) -> Iterator[None]:
        """A few texts (a query) on a CPU run on the cores free now only: on a busy
        machine, one thread is many times faster than two that wait for each other."""
        before = torch.get_num_threads()
        threads = min(before, free_cores()) if self.device.type == "cpu" else before
        if texts > FEW_TEXTS or threads == before:
            yield
            return
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    @torch.inference_mode()
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Images -> unit vectors: normalised float32 (n, 3, size, size), or uint8 squares
        (n, size, size, 3) as decoding processes send them, normalised here."""
        if self.text_only:
            raise ValueError(f"{self.name} was loaded for text only (load_model(text_only=False))")
        if len(pixels) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._unit(self.model.encode_image(self._model_input(pixels)))

    def _model_input(self, pixels: np.ndarray) -> torch.Tensor:
        """uint8 squares cross to a GPU from pinned memory, as bytes, and are normalised
        there; float pixels go as they are."""
        x = torch.from_numpy(pixels)
        if x.dtype != torch.uint8:
            return x.to(self.device, self._pixels_dtype)
        if self.device.type == "cuda":
            x = x.pin_memory().to(self.device, non_blocking=True)
        x = (x.permute(0, 3, 1, 2).float().div_(255) - self._mean).div_(self._std)
        return x.to(self._pixels_dtype)

    def encode_images(self, images: Sequence[ImageSource], batch_size: int = 32) -> np.ndarray:
        """Image files or PIL images -> float32 (n, dim), L2-normalised, decoded as indexing
        decodes them (a large JPEG at a reduced scale, so a 100-MP photo is a query too).
        A file that cannot be used raises ImageError naming it."""
        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i : i + batch_size]
            batch = [preprocess(img, self.preprocessing, draft=True)[0] for img in chunk]
            out.append(self.encode_pixels(np.stack(batch)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def save(self, directory: str) -> None:
        """Write clipsearch's model directory (loads back with the same digest)."""
        if self.precision != "fp32" or self.text_only or self.fused:
            raise ValueError(
                "save a model loaded whole, with precision='fp32' (and, for MobileCLIP, given "
                "to Encoder unfused: load_model fuses its branches)"
            )
        save_weights(self.model, directory, self.name)

    @staticmethod
    def _unit(x: torch.Tensor) -> np.ndarray:
        return F.normalize(x.float(), dim=-1).cpu().numpy()


def load_model(
    spec: str = DEFAULT_MODEL,
    device: str | None = None,
    precision: str = "fp32",
    text_only: bool = False,
    digests: DigestCache | None = None,
) -> Encoder:
    """Load CLIP for encoding.

    spec is one of:
      - a named pretrained model, e.g. "ViT-B-32/openai" (the default) or "ViT-B-32/laion2b",
        fetched once into the Hugging Face cache;
      - a checkpoint file: OpenAI / open_clip state dict (.pt, .bin, .pth, .safetensors),
        an OpenAI TorchScript archive, or a Hugging Face CLIPModel weights file;
      - a directory: clipsearch's own model (clipsearch.json) or a Hugging Face CLIPModel;
      - "open_clip:<arch>/<pretrained tag>": any model open_clip builds (SigLIP, MobileCLIP,
        XLM-R towers), with the open_clip extra installed;
      - "random:<config>[:seed]" or "open_clip:<arch>/random[:seed]", untrained weights for
        tests and benchmarks.

    text_only leaves out the image tower, for queries: with the digest known to `digests`
    (by default the user's: core/memo.py), its weights are not even read.
    """
    digests = DigestCache.of_user() if digests is None else digests
    weights = resolve(spec, text_only=text_only)
    if weights.aligned_to is not None:  # a text tower: the image model's vectors are its own
        return Encoder(
            weights.build(text_only=True),
            weights.name,
            device=device,
            precision=precision,
            digest=weights.aligned_to,
            owns_model=True,
            aligned=True,
        )
    digest = digests.get(weights.source)
    if digest is not None:
        model = weights.build(text_only=text_only)
    else:  # the digest covers every tensor: read them all, once
        weights = weights if weights.complete else resolve(spec)
        model = weights.build()
        digest = weights_digest(model)
        digests.put(weights.source, digest)
        if text_only:
            model.visual = None
    encoder = Encoder(
        model, weights.name, device=device, precision=precision, digest=digest, owns_model=True
    )
    encoder.source = weights.source
    return encoder
