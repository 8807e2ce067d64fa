"""The named pretrained models clipsearch knows, and where the hub keeps them.

No torch here: `clipsearch models` and the command line's help read this module.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..images.statistics import INCEPTION_MEAN, INCEPTION_STD, OPENAI_MEAN, OPENAI_STD


@dataclass(frozen=True)
class Pretrained:
    """A named model on the Hugging Face hub, in open_clip's file layout, with the
    preprocessing it was trained with (open_clip's pretrained.py says which).

    Plain ViT CLIPs load into clipsearch's own CLIP; the others (`needs_open_clip`) are
    built by open_clip, the optional backend, as `open_clip:<arch>/<tag>`."""

    name: str
    repo: str
    quick_gelu: bool
    family: str
    params_m: int  # parameters, in millions, both towers
    embed_dim: int
    languages: str = "English"
    needs_open_clip: bool = False
    filename: str = "open_clip_model.safetensors"
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    resize: str = "shortest"
    interpolation: str = "bicubic"
    open_clip: tuple[str, str] = ("", "")  # (architecture, pretrained tag) in open_clip

    @property
    def arch(self) -> str:
        return self.name.split("/")[0]

    @property
    def spec(self) -> str:
        """What load_model is given for it: its name, the backend's spec, or the id of
        Apple's repository where only that holds it (MobileCLIP-S0)."""
        arch, tag = self.open_clip
        if self.filename in APPLE_CHECKPOINTS:
            return self.repo
        return f"open_clip:{arch}/{tag}" if self.needs_open_clip else self.name

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo}/blob/main/{self.filename}"


def _plain(name: str, repo: str, quick_gelu: bool, family: str, tag: str, **more) -> Pretrained:
    """A ViT CLIP of OpenAI's architecture: B/32 and B/16 (512-d), L/14 (768-d)."""
    size = {"ViT-B-32": (151, 512), "ViT-B-16": (150, 512)}.get(name.split("/")[0], (428, 768))
    arch = name.split("/")[0] + ("-quickgelu" if quick_gelu and tag != "openai" else "")
    return Pretrained(name, repo, quick_gelu, family, *size, open_clip=(arch, tag), **more)


def _mobileclip2(size: str, params_m: int, dim: int, **prep) -> Pretrained:
    """MobileCLIP2-<size>/dfndr2b as open_clip builds it (timm's copy of Apple's weights);
    `prep`: where its preprocessing is not MobileCLIP's (open_clip's pretrained.py)."""
    arch = f"MobileCLIP2-{size}"
    return Pretrained(
        f"{arch}/dfndr2b",
        f"timm/{arch}-OpenCLIP",
        False,
        "MobileCLIP 2",
        params_m,
        dim,
        needs_open_clip=True,
        open_clip=(arch, "dfndr2b"),
        **{**MOBILECLIP, **prep},
    )


# Apple's own MobileCLIP repositories hold a bare state dict, in open_clip's names for
# MobileCLIP2 (apple/MobileCLIP2-L-14...), in those of Apple's code for v1
# (apple/MobileCLIP-S0, -S1, -S2, -B: models/apple_layout.py): the file's name says the
# architecture, and the pretrained tag whose preprocessing it was trained with.
APPLE_CHECKPOINTS = {
    "mobileclip_s0.pt": ("MobileCLIP-S0", "datacompdr"),  # built by models/mobileclip.py
    "mobileclip_b.pt": ("MobileCLIP-B", "datacompdr"),
    "mobileclip_blt.pt": ("MobileCLIP-B", "datacompdr_lt"),
    "mobileclip_s1.pt": ("MobileCLIP-S1", "datacompdr"),
    "mobileclip_s2.pt": ("MobileCLIP-S2", "datacompdr"),
    "mobileclip2_s0.pt": ("MobileCLIP2-S0", "dfndr2b"),
    "mobileclip2_s2.pt": ("MobileCLIP2-S2", "dfndr2b"),
    "mobileclip2_s3.pt": ("MobileCLIP2-S3", "dfndr2b"),
    "mobileclip2_s4.pt": ("MobileCLIP2-S4", "dfndr2b"),
    "mobileclip2_b.pt": ("MobileCLIP2-B", "dfndr2b"),
    "mobileclip2_l14.pt": ("MobileCLIP2-L-14", "dfndr2b"),
}

SIGLIP = dict(mean=INCEPTION_MEAN, std=INCEPTION_STD, resize="squash", needs_open_clip=True)
MOBILECLIP = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), interpolation="bilinear")

PRETRAINED: dict[str, Pretrained] = {
    p.name: p
    for p in [
        _plain(
            "ViT-B-32/openai",
            "timm/vit_base_patch32_clip_224.openai",
            True,
            "OpenAI CLIP",
            "openai",
        ),
        _plain(
            "ViT-B-16/openai",
            "timm/vit_base_patch16_clip_224.openai",
            True,
            "OpenAI CLIP",
            "openai",
        ),
        _plain(
            "ViT-L-14/openai",
            "timm/vit_large_patch14_clip_224.openai",
            True,
            "OpenAI CLIP",
            "openai",
        ),
        _plain(
            "ViT-L-14-336/openai",
            "timm/vit_large_patch14_clip_336.openai",
            True,
            "OpenAI CLIP",
            "openai",
        ),
        _plain(
            "ViT-B-32/laion2b",
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
            False,
            "LAION-2B",
            "laion2b_s34b_b79k",
        ),
        _plain(
            "ViT-B-16/laion2b",
            "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
            False,
            "LAION-2B",
            "laion2b_s34b_b88k",
        ),
        _plain(  # open_clip's laion2b_s32b_b82k: Inception's statistics
            "ViT-L-14/laion2b",
            "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
            False,
            "LAION-2B",
            "laion2b_s32b_b82k",
            mean=INCEPTION_MEAN,
            std=INCEPTION_STD,
        ),
        _plain(
            "ViT-B-32/datacomp",
            "laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K",
            False,
            "DataComp-XL",
            "datacomp_xl_s13b_b90k",
        ),
        _plain(
            "ViT-B-16/datacomp",
            "laion/CLIP-ViT-B-16-DataComp.XL-s13B-b90K",
            False,
            "DataComp-XL",
            "datacomp_xl_s13b_b90k",
        ),
        _plain(
            "ViT-L-14/datacomp",
            "laion/CLIP-ViT-L-14-DataComp.XL-s13B-b90K",
            False,
            "DataComp-XL",
            "datacomp_xl_s13b_b90k",
        ),
        _plain("ViT-B-16/dfn2b", "apple/DFN2B-CLIP-ViT-B-16", True, "DFN (Apple)", "dfn2b"),
        _plain("ViT-L-14/dfn2b", "apple/DFN2B-CLIP-ViT-L-14", True, "DFN (Apple)", "dfn2b"),
        _plain(
            "ViT-B-32/metaclip",
            "timm/vit_base_patch32_clip_224.metaclip_2pt5b",
            True,
            "MetaCLIP",
            "metaclip_fullcc",
        ),
        _plain(
            "ViT-B-16/metaclip",
            "timm/vit_base_patch16_clip_224.metaclip_2pt5b",
            True,
            "MetaCLIP",
            "metaclip_fullcc",
        ),
        _plain(
            "ViT-L-14/metaclip",
            "timm/vit_large_patch14_clip_224.metaclip_2pt5b",
            True,
            "MetaCLIP",
            "metaclip_fullcc",
        ),
        Pretrained(
            "ViT-B-16-SigLIP2/webli",
            "timm/ViT-B-16-SigLIP2",
            False,
            "SigLIP 2",
            375,
            768,
            languages="multilingual",
            open_clip=("ViT-B-16-SigLIP2", "webli"),
            **SIGLIP,
        ),
        Pretrained(
            "ViT-B-16-SigLIP/webli",
            "timm/ViT-B-16-SigLIP",
            False,
            "SigLIP",
            203,
            768,
            open_clip=("ViT-B-16-SigLIP", "webli"),
            **SIGLIP,
        ),
        Pretrained(
            "MobileCLIP-S1/datacompdr",
            "apple/MobileCLIP-S1-OpenCLIP",
            False,
            "MobileCLIP",
            85,
            512,
            needs_open_clip=True,
            open_clip=("MobileCLIP-S1", "datacompdr"),
            **MOBILECLIP,
        ),
        Pretrained(
            "MobileCLIP-S2/datacompdr",
            "apple/MobileCLIP-S2-OpenCLIP",
            False,
            "MobileCLIP",
            99,
            512,
            needs_open_clip=True,
            open_clip=("MobileCLIP-S2", "datacompdr"),
            **MOBILECLIP,
        ),
        Pretrained(
            "MobileCLIP-S0/datacompdr",
            "apple/MobileCLIP-S0",
            False,
            "MobileCLIP",
            54,
            512,
            needs_open_clip=True,
            filename="mobileclip_s0.pt",
            open_clip=("MobileCLIP-S0", "datacompdr"),
            **MOBILECLIP,
        ),
        _mobileclip2("S0", 75, 512),
        _mobileclip2("B", 150, 512),
        _mobileclip2("S2", 99, 512),
        _mobileclip2("S3", 249, 768, mean=OPENAI_MEAN, std=OPENAI_STD),
        _mobileclip2("S4", 445, 768, mean=OPENAI_MEAN, std=OPENAI_STD),
        _mobileclip2("L-14", 428, 768, mean=OPENAI_MEAN, std=OPENAI_STD, interpolation="bicubic"),
        Pretrained(
            "MobileCLIP-B/datacompdr",
            "apple/MobileCLIP-B-OpenCLIP",
            False,
            "MobileCLIP",
            150,
            512,
            needs_open_clip=True,
            open_clip=("MobileCLIP-B", "datacompdr"),
            **MOBILECLIP,
        ),
        Pretrained(
            "xlm-roberta-base-ViT-B-32/laion5b",
            "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k",
            False,
            "LAION-5B XLM-R",
            366,
            512,
            languages="100 languages (XLM-R)",
            needs_open_clip=True,
            open_clip=("xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k"),
        ),
    ]
}
DEFAULT_MODEL = "ViT-B-32/openai"


def weight_files(p: Pretrained) -> tuple[str, ...]:
    """The files that may hold a named model's weights, preferred first: some repositories
    have only open_clip's older .bin."""
    return (p.filename, "open_clip_pytorch_model.bin")


def cached_file(p: Pretrained) -> str | None:
    """The local path of a named model's weights if the hub cache already has them."""
    from huggingface_hub import try_to_load_from_cache

    for filename in weight_files(p):
        found = try_to_load_from_cache(p.repo, filename)
        if isinstance(found, str):
            return found
    return None
