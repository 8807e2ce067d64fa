"""Models open_clip builds (SigLIP 2, MobileCLIP, XLM-R), through clipsearch's backend:
the same vectors as open_clip's own, indexed and queried, fine-tuned with their own loss.

open_clip needs a torchvision built for the installed torch, which the CPU torch of the
README's first step does not have on PyPI. Where this interpreter cannot import open_clip,
the one test at the end runs this file in an interpreter that can (.venv-open-clip, made
by .ci/run; docs/models.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cached_repo, make_image, needs_open_clip, open_clip_missing
from PIL import Image

from clipsearch.models.encoder import load_model
from clipsearch.models.open_clip_models import BackendMissing, open_clip_module

ROOT = Path(__file__).resolve().parents[2]
CHILD = "CLIPSEARCH_OPEN_CLIP_CHILD"  # set in the interpreter this file runs itself in
OTHER_PYTHON = Path(
    os.environ.get("CLIPSEARCH_OPEN_CLIP_PYTHON", ROOT / ".venv-open-clip/bin/python")
)
SIGLIP2, MOBILECLIP, XLM_R = "ViT-B-16-SigLIP2", "MobileCLIP-S1", "xlm-roberta-base-ViT-B-32"
SMALL_SIGLIP2 = "test-small-SigLIP2"  # registered by the small_siglip2 fixture
TEXTS = ["a dog on a beach", "Hund am Strand", "海辺の犬", "a red car", ""]
WORDS = "a dog on the beach red car photo of hund am strand 海辺の犬 cat sky".split()  # noqa: SIM905

# xlm-roberta-base's config.json, as the hub has it: open_clip builds its text tower from it
XLM_R_BASE = {
    "architectures": ["XLMRobertaForMaskedLM"], "model_type": "xlm-roberta",
    "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu", "hidden_dropout_prob": 0.1,
    "hidden_size": 768, "initializer_range": 0.02, "intermediate_size": 3072,
    "layer_norm_eps": 1e-05, "max_position_embeddings": 514, "num_attention_heads": 12,
    "num_hidden_layers": 12, "type_vocab_size": 1, "vocab_size": 250002,
    "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2,
}  # fmt: skip


def tiny_tokenizer(folder: Path, specials: list[str], template: str) -> Path:
    """A word-level Hugging Face tokenizer over a few words in several languages: what
    open_clip loads for SigLIP and XLM-R, small and made here instead of downloaded."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {token: i for i, token in enumerate([*specials, *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, vocab[t]) for t in ("<s>", "</s>")]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    names = {"pad_token": "<pad>", "eos_token": "</s>", "bos_token": "<s>", "unk_token": "<unk>"}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512, **names}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """A Hugging Face cache, offline, holding what open_clip fetches besides weights for
    these architectures: SigLIP 2's tokenizer, and XLM-R's config and tokenizer."""
    cache = tmp_path / "hub"
    siglip = tiny_tokenizer(tmp_path / "siglip", ["<pad>", "</s>", "<s>", "<unk>"], "$A </s>")
    (siglip / "config.json").write_text(json.dumps({"architecture": "vit_base_patch16_siglip_224"}))
    cached_repo(cache, "timm/ViT-B-16-SigLIP2", siglip)
    xlm = tiny_tokenizer(tmp_path / "xlm", ["<s>", "<pad>", "</s>", "<unk>"], "<s> $A </s>")
    (xlm / "config.json").write_text(json.dumps(XLM_R_BASE))
    cached_repo(cache, "xlm-roberta-base", xlm)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    from clipsearch.models.open_clip_models import tokenizer_for

    tokenizer_for.cache_clear()
    return cache


@pytest.fixture
def small_siglip2(hub_cache, tmp_path) -> str:
    """ViT-B-16-SigLIP2's own config, every switch kept (timm tower with attention pooling,
    bidirectional text with last-token pooling, learned bias, SigLIP 2's tokenizer), at a
    size whose training step and checkpoints take seconds and megabytes rather than a minute
    and 7 GB: the tests that run the model rather than compare it with its name use it."""
    import copy

    open_clip = open_clip_module()
    cfg = copy.deepcopy(open_clip.get_model_config(SIGLIP2))
    cfg["embed_dim"] = 192  # vit_tiny's width: SigLIP 2's image tower has no projection
    cfg["vision_cfg"]["timm_model_name"] = "vit_tiny_patch16_224"
    cfg["text_cfg"].update(vocab_size=len(WORDS) + 4, width=192, heads=3, layers=2)
    path = tmp_path / f"{SMALL_SIGLIP2}.json"
    path.write_text(json.dumps(cfg))
    open_clip.add_model_config(path)
    return SMALL_SIGLIP2


def images(n: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)) for _ in range(n)]


def reference(arch: str, seed: int):
    """open_clip's own model, tokenizer and transform, built as the backend builds them."""
    open_clip = open_clip_module()
    torch.manual_seed(seed)
    model, _, transform = open_clip.create_model_and_transforms(arch, pretrained_text=False)
    return model.eval(), open_clip.get_tokenizer(arch), transform


@needs_open_clip
@pytest.mark.parametrize("arch", [SIGLIP2, MOBILECLIP, XLM_R])
def test_vectors_equal_open_clips_own(arch, hub_cache):
    encoder = load_model(f"open_clip:{arch}/random:3")
    model, tokenize, transform = reference(arch, 3)
    pictures = images(3)
    with torch.no_grad():
        texts = model.encode_text(tokenize(TEXTS), normalize=True).numpy()
        pixels = torch.stack([transform(p) for p in pictures])
        vectors = model.encode_image(pixels, normalize=True).numpy()
    np.testing.assert_allclose(encoder.encode_text(TEXTS), texts, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_images(pictures), vectors, atol=1e-5)
    assert encoder.dim == texts.shape[1]
    assert encoder.architecture == f"open_clip:{arch}"


@needs_open_clip
def test_digest_ties_vectors_to_weights_and_preprocessing(hub_cache):
    a, b = (
        load_model(f"open_clip:{MOBILECLIP}/random:1"),
        load_model(f"open_clip:{MOBILECLIP}/random:1"),
    )
    c = load_model(f"open_clip:{MOBILECLIP}/random:2")
    assert a.digest == b.digest != c.digest
    text_only = load_model(f"open_clip:{MOBILECLIP}/random:1", text_only=True)
    assert text_only.digest == a.digest and text_only.text_only
    np.testing.assert_allclose(text_only.encode_text(TEXTS), a.encode_text(TEXTS), atol=1e-6)


@needs_open_clip
def test_a_folder_indexed_and_queried_with_siglip2(small_siglip2, tmp_path):
    from typer.testing import CliRunner

    from clipsearch.cli import app

    photos = tmp_path / "photos"
    for i in range(6):
        make_image(photos / f"{i}.png", size=(64, 48), seed=i)
    where = ["--store", str(tmp_path / "store"), "--model", f"open_clip:{small_siglip2}/random:0"]

    def cli(*args: str) -> str:
        result = CliRunner().invoke(app, [*args, *where])
        assert result.exit_code == 0, result.output
        return result.stdout

    cli("index", str(photos))
    by_image = json.loads(cli("query", "-i", str(photos / "4.png"), "-f", "json"))["results"]
    assert Path(by_image[0]["path"]).name == "4.png"
    assert by_image[0]["score"] == pytest.approx(1, abs=1e-3)
    by_text = json.loads(cli("query", "Hund am Strand", "-k", "6", "-f", "json"))["results"]
    assert sorted(Path(r["path"]).name for r in by_text) == [f"{i}.png" for i in range(6)]
    labels = ["classify", str(photos / "0.png"), "--labels", "dog,car", "--templates", "simple"]
    classified = CliRunner().invoke(app, [*labels, "--json", *where[2:]])
    assert classified.exit_code == 0, classified.output
    assert {"dog", "car"} <= set(classified.stdout.replace('"', " ").split())


@needs_open_clip
def test_siglip_classifies_each_label_by_its_own_sigmoid(small_siglip2, tmp_path):
    """As SigLIP was trained, and as open_clip scores it: sigmoid(scale x cosine + bias)
    for each label alone, so the labels need not sum to 1; CLIP keeps its softmax."""
    from clipsearch.training.evaluate import classify

    images = [str(make_image(tmp_path / f"{i}.png", size=(64, 48), seed=i)) for i in range(3)]
    labels = ["dog", "car", "Hund am Strand"]
    siglip = load_model(f"open_clip:{small_siglip2}/random:0")
    probs = classify(siglip, images, labels, ["{}"])
    cosines = torch.from_numpy(siglip.encode_images(images) @ siglip.encode_text(labels).T)
    model = siglip.model
    want = torch.sigmoid(cosines * model.logit_scale.exp() + model.logit_bias).detach().numpy()
    np.testing.assert_allclose(probs, want, rtol=1e-5, atol=1e-7)
    assert not np.allclose(probs.sum(axis=1), 1)
    clip = load_model("random:tiny")
    np.testing.assert_allclose(classify(clip, images, labels, ["{}"]).sum(axis=1), 1, rtol=1e-6)
    with torch.no_grad():  # labels ~100 logits off (exp overflows float32 from 89): no warning
        model.logit_scale.fill_(np.log(112.0))
        model.logit_bias.fill_(-100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(classify(siglip, images, labels, ["{}"])).all()


@needs_open_clip
def test_a_hub_repository_of_another_architecture_is_built_by_open_clip(hub_cache, tmp_path):
    """`--model org/name` for a MobileCLIP repository (open_clip_config.json naming a timm
    tower): open_clip builds it from the cache, offline, with the repository's weights."""
    from safetensors.torch import save_file

    open_clip = open_clip_module()
    model, tokenize, transform = reference(MOBILECLIP, 5)
    repo = tmp_path / "repo"
    repo.mkdir()
    save_file(model.state_dict(), str(repo / "open_clip_model.safetensors"))
    preprocess = {"mean": [0, 0, 0], "std": [1, 1, 1], "interpolation": "bilinear"}
    config = {"model_cfg": open_clip.get_model_config(MOBILECLIP), "preprocess_cfg": preprocess}
    (repo / "open_clip_config.json").write_text(json.dumps(config))
    cached_repo(hub_cache, "someone/mobileclip-s1", repo)
    expected = model.encode_text(tokenize(TEXTS), normalize=True).detach()
    for spec in ("someone/mobileclip-s1", str(repo)):  # by hub id, and as a local folder
        encoder = load_model(spec)
        assert encoder.preprocessing.mean == (0, 0, 0)
        assert encoder.preprocessing.interpolation == "bilinear"
        np.testing.assert_allclose(encoder.encode_text(TEXTS), expected, atol=1e-5)
    assert load_model("someone/mobileclip-s1").name == "someone/mobileclip-s1"


def apple_repository(hub_cache, tmp_path, arch: str, checkpoint: str, repo_id: str, seed: int):
    """One of Apple's MobileCLIP2 repositories as the hub has it: the model's config.json
    and a bare state dict in a pickle, random weights; with open_clip's model for them."""
    open_clip = open_clip_module()
    model, tokenize, _ = reference(arch, seed)
    repo = tmp_path / arch
    repo.mkdir()
    torch.save(model.state_dict(), repo / checkpoint)
    (repo / "config.json").write_text(json.dumps(open_clip.get_model_config(arch)))
    cached_repo(hub_cache, repo_id, repo)
    return model, tokenize


def as_trained(model, tokenize, arch: str, tag: str, pictures) -> tuple[np.ndarray, np.ndarray]:
    """open_clip's text and image vectors from a model, its images prepared as the
    pretrained tag says (what the weights of that tag were trained with)."""
    open_clip = open_clip_module()
    trained = open_clip.get_pretrained_cfg(arch, tag)
    transform = open_clip.image_transform(
        model.visual.image_size, is_train=False, mean=trained["mean"], std=trained["std"],
        interpolation=trained["interpolation"], resize_mode=trained["resize_mode"],
    )  # fmt: skip
    with torch.no_grad():
        texts = model.encode_text(tokenize(TEXTS), normalize=True).numpy()
        pixels = torch.stack([transform(p) for p in pictures])
        return texts, model.encode_image(pixels, normalize=True).numpy()


@needs_open_clip
def test_apples_mobileclip2_repository_is_read_by_its_id(hub_cache, tmp_path):
    """`--model apple/MobileCLIP2-S0`: the checkpoint's name says the architecture; the
    vectors are open_clip's own for those weights, with the preprocessing of the pretrained
    tag (dfndr2b) the weights were trained with, offline from the cache."""
    model, tokenize = apple_repository(
        hub_cache, tmp_path, "MobileCLIP2-S0", "mobileclip2_s0.pt", "apple/MobileCLIP2-S0", 7
    )
    pictures = images(2)
    texts, vectors = as_trained(model, tokenize, "MobileCLIP2-S0", "dfndr2b", pictures)
    encoder = load_model("apple/MobileCLIP2-S0", precision="fp32")
    assert encoder.architecture == "open_clip:MobileCLIP2-S0" and encoder.dim == 512
    np.testing.assert_allclose(encoder.encode_text(TEXTS), texts, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_images(pictures), vectors, atol=1e-5)


@needs_open_clip
def test_apples_mobileclip2_repository_indexes_and_answers_queries(hub_cache, tmp_path):
    from typer.testing import CliRunner

    from clipsearch.cli import app

    apple_repository(
        hub_cache, tmp_path, "MobileCLIP2-S0", "mobileclip2_s0.pt", "apple/MobileCLIP2-S0", 8
    )
    for i in range(3):
        make_image(tmp_path / "photos" / f"{i}.png", seed=i)
    store = ["--store", str(tmp_path / "store")]
    runner = CliRunner()
    indexed = runner.invoke(app, ["index", str(tmp_path / "photos"), *store, "-m",
                                  "apple/MobileCLIP2-S0", "--workers", "1"])  # fmt: skip
    assert indexed.exit_code == 0, indexed.output
    found = runner.invoke(app, ["query", "a photo", *store, "-f", "json"])
    assert found.exit_code == 0, found.output
    answer = json.loads(found.stdout)
    assert answer["model"] == "apple/MobileCLIP2-S0" and len(answer["results"]) == 3


APPLE_IMAGE = [  # open_clip's (timm's) names for MobileCLIP's image tower -> Apple's own
    (r"stages\.0\.blocks\.", "network.0."), (r"stages\.1\.blocks\.", "network.2."),
    (r"stages\.2\.blocks\.", "network.4."), (r"stages\.3\.blocks\.", "network.7."),
    (r"stages\.1\.downsample\.", "network.1."), (r"stages\.2\.downsample\.", "network.3."),
    (r"stages\.3\.downsample\.", "network.5."), (r"stages\.3\.pos_emb\.pos_enc", "network.6.pe"),
    (r"^stem", "patch_embed"), (r"conv_kxk", "rbr_conv"), (r"conv_scale", "rbr_scale"),
    (r"identity", "rbr_skip"), (r"large_conv", "lkb_origin"), (r"\bmlp\b", "convffn"),
    (r"final_conv\.se\.fc1", "final_conv.se.reduce"),
    (r"final_conv\.se\.fc2", "final_conv.se.expand"), (r"^final_conv", "conv_exp"),
    (r"(layer_scale(_\d)?)\.gamma", r"\1"),
]  # fmt: skip
APPLE_TEXT = [  # open_clip's text tower -> Apple's
    (r"token_embedding\.weight", "embedding_layer.weight"),
    (r"positional_embedding", "positional_embedding.pos_embed.pos_embed"),
    (r"transformer\.resblocks\.(\d+)\.ln_1\.", r"transformer.\1.pre_norm_mha.0."),
    (r"transformer\.resblocks\.(\d+)\.attn\.in_proj_", r"transformer.\1.pre_norm_mha.1.qkv_proj."),
    (
        r"transformer\.resblocks\.(\d+)\.attn\.out_proj\.",
        r"transformer.\1.pre_norm_mha.1.out_proj.",
    ),
    (r"transformer\.resblocks\.(\d+)\.ln_2\.", r"transformer.\1.pre_norm_ffn.0."),
    (r"transformer\.resblocks\.(\d+)\.mlp\.c_fc\.", r"transformer.\1.pre_norm_ffn.1."),
    (r"transformer\.resblocks\.(\d+)\.mlp\.c_proj\.", r"transformer.\1.pre_norm_ffn.4."),
    (r"ln_final\.", "final_layer_norm."),
    (r"text_projection", "projection_layer"),
]


def in_apples_names(state: dict) -> dict:
    """An open_clip MobileCLIP-S1's tensors as Apple's ml-mobileclip names them (the
    image projection as Apple's (in, out) matrix without a bias; the text positions
    (1, 1, 77, d)): what apple/MobileCLIP-S1's mobileclip_s1.pt holds."""
    import re

    out = {}
    for key, value in state.items():
        if key == "visual.trunk.head.fc.bias":
            continue
        if key == "visual.trunk.head.fc.weight":
            out["image_encoder.model.head.proj"] = value.T.contiguous()
        elif key.startswith("visual.trunk."):
            name = key[len("visual.trunk.") :]
            for pattern, new in APPLE_IMAGE:
                name = re.sub(pattern, new, name)
            out[f"image_encoder.model.{name}"] = value
        elif key.startswith("text."):
            name = key[len("text.") :]
            for pattern, new in APPLE_TEXT:
                name = re.sub(f"^{pattern}", new, name)
            shaped = value.reshape(1, 1, *value.shape) if name.startswith("positional") else value
            out[f"text_encoder.{name}"] = shaped
        else:
            out[key] = value
    return out


@needs_open_clip
def test_apples_own_mobileclip_checkpoint_is_read_by_its_id(hub_cache, tmp_path):
    """`--model apple/MobileCLIP-S1`: Apple's checkpoint in the names of Apple's code
    (every name and shape as tests/data/mobileclip_s1_keys.json, listed from that code)
    gives the vectors open_clip gives for the same weights."""
    model, tokenize, _ = reference(MOBILECLIP, 9)
    with torch.no_grad():
        model.visual.trunk.head.fc.bias.zero_()  # Apple's projection has none
    apple = in_apples_names(model.state_dict())
    listed = json.loads((ROOT / "tests" / "data" / "mobileclip_s1_keys.json").read_text())
    assert {k: list(v.shape) for k, v in apple.items()} == dict(listed)
    repo = tmp_path / "apple"
    repo.mkdir()
    torch.save(apple, repo / "mobileclip_s1.pt")
    cached_repo(hub_cache, "apple/MobileCLIP-S1", repo)
    pictures = images(2)
    texts, vectors = as_trained(model, tokenize, MOBILECLIP, "datacompdr", pictures)
    encoder = load_model("apple/MobileCLIP-S1", precision="fp32")
    np.testing.assert_allclose(encoder.encode_text(TEXTS), texts, atol=1e-5)
    np.testing.assert_allclose(encoder.encode_images(pictures), vectors, atol=1e-5)


def test_only_openais_architecture_is_left_to_clipsearchs_own_clip(tmp_path):
    from clipsearch.models.open_clip_models import needs_open_clip

    def folder(model_cfg: dict) -> Path:
        (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg}))
        return tmp_path

    vision = {"image_size": 224, "layers": 12, "width": 768, "patch_size": 32}
    text = {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12}
    plain = {"embed_dim": 512, "vision_cfg": vision, "text_cfg": text}
    assert not needs_open_clip(folder(plain))
    assert not needs_open_clip(folder({**plain, "quick_gelu": True}))
    assert needs_open_clip(folder({**plain, "vision_cfg": {**vision, "head_width": 80}}))
    assert needs_open_clip(folder({**plain, "text_cfg": {**text, "hf_tokenizer_name": "x/y"}}))
    assert needs_open_clip(folder({**plain, "text_cfg": {**text, "heads": 16}}))
    assert needs_open_clip(folder({**plain, "custom_text": True}))
    assert not needs_open_clip(tmp_path / "elsewhere")


@needs_open_clip
def test_a_saved_model_keeps_the_activation_its_tag_was_trained_with(tmp_path):
    """open_clip's ViT-B-32/openai is QuickGELU though its arch name does not say so; a
    fine-tuned copy saved by clipsearch must load back with QuickGELU, not GELU."""
    from clipsearch.models.encoder import Encoder
    from clipsearch.models.open_clip_models import OpenClipConfig, preprocessing_of

    torch.manual_seed(0)
    model = open_clip_module().create_model("ViT-B-32", force_quick_gelu=True).eval()
    model.config = OpenClipConfig("ViT-B-32", 512, preprocessing_of(model), "openai", True)
    encoder = Encoder(model, "open_clip:ViT-B-32/openai")
    encoder.save(str(tmp_path / "saved"))
    assert json.loads((tmp_path / "saved" / "clipsearch.json").read_text())["config"]["quick_gelu"]
    again = load_model(str(tmp_path / "saved"))
    assert again.digest == encoder.digest
    np.testing.assert_allclose(again.encode_text(TEXTS), encoder.encode_text(TEXTS), atol=1e-6)


def pairs_file(tmp_path: Path, n: int = 4) -> tuple[Path, list[Path], list[str]]:
    paths = [make_image(tmp_path / "pairs" / f"{i}.png", seed=i) for i in range(n)]
    captions = TEXTS[:n]
    rows = [{"image": str(p), "caption": c} for p, c in zip(paths, captions)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data, paths, captions


@needs_open_clip
@pytest.mark.parametrize(
    ("arch", "loss"), [(SMALL_SIGLIP2, "SigLipLoss"), (MOBILECLIP, "ClipLoss")]
)
def test_train_from_fine_tunes_with_the_models_own_loss(arch, loss, small_siglip2, tmp_path):
    """One step on one batch: the loss of that step is open_clip's own loss for the model
    on the same batch, and the run directory loads as a changed model of the same kind."""
    from clipsearch.images.pixels import preprocess
    from clipsearch.training.train import TrainConfig, train

    data, paths, captions = pairs_file(tmp_path)
    spec = f"open_clip:{arch}/random:0"
    start = load_model(spec)
    model, tokenize, _ = reference(arch, 0)
    pixels = torch.from_numpy(np.stack([preprocess(p, start.preprocessing)[0] for p in paths]))
    with torch.no_grad():  # in training mode, as the step runs (MobileCLIP has batch norms)
        expected = getattr(open_clip_module().loss, loss)()(
            *model.train()(pixels, tokenize(captions))
        )
    steps = []
    config = TrainConfig(
        data=str(data), init=spec, run_dir=str(tmp_path / "run"), epochs=1, batch_size=4,
        lr=1e-4, warmup=0, precision="fp32", workers=0, val_data=str(data), augment="none",
    )  # fmt: skip
    result = train(config, progress=lambda step, total, record: steps.append(record))
    assert result.steps == 1 and len(steps) == 1
    assert result.before["text_to_image_R@1"] >= 0 and result.after["score"] >= 0  # eval ran
    assert steps[0]["loss"] == pytest.approx(expected.item(), rel=1e-4)
    tuned = load_model(str(tmp_path / "run"))
    assert tuned.architecture == start.architecture and tuned.digest != start.digest
    assert tuned.preprocessing == start.preprocessing
    assert tuned.encode_text(TEXTS).shape == (len(TEXTS), start.dim)


@pytest.mark.parametrize("spec", [f"open_clip:{SIGLIP2}/webli", "ViT-B-16-SigLIP2/webli"])
def test_without_open_clip_one_line_says_what_to_install(spec, monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)  # as if it were not installed
    with pytest.raises(BackendMissing, match=r'pip install "clipsearch\[open_clip\]"'):
        load_model(spec)


@needs_open_clip
def test_the_named_models_table_says_what_open_clip_builds(hub_cache):
    """Size, vector size, activation and image statistics of every named model, against
    the model open_clip builds for it (on the meta device: shapes only); a plain ViT's
    shapes are clipsearch's."""
    from clipsearch.models import mobileclip
    from clipsearch.models.model import CONFIGS
    from clipsearch.models.open_clip_models import create
    from clipsearch.models.pretrained import PRETRAINED

    open_clip = open_clip_module()
    millions: dict[str, int] = {}  # by architecture: several tags share one
    for p in PRETRAINED.values():
        arch, tag = p.open_clip
        if arch not in millions:
            with torch.device("meta"):  # made there, not made on the CPU and moved
                model = create(arch, pretrained_text=False, device="meta")
            millions[arch] = round(sum(t.numel() for t in model.parameters()) / 1e6)
        assert millions[arch] == p.params_m, p.name
        assert open_clip.get_model_config(arch)["embed_dim"] == p.embed_dim, p.name
        trained = open_clip.get_pretrained_cfg(arch, tag) or mobileclip.TRAINED  # S0: Apple's
        assert trained.get("quick_gelu", False) == p.quick_gelu
        if p.needs_open_clip and "mean" in trained:  # the statistics it was trained with
            assert (p.mean, p.std) == (tuple(trained["mean"]), tuple(trained["std"])), p.name
        if not p.needs_open_clip:
            assert CONFIGS[p.arch].embed_dim == p.embed_dim, p.name


@pytest.mark.skipif(open_clip_missing() is None, reason="open_clip imports here: the tests ran")
def test_in_an_interpreter_that_has_open_clip():
    """This file, and the check of the named models' preprocessing against open_clip, run
    where open_clip imports; that interpreter is part of CI (.ci/run makes it)."""
    missing = open_clip_missing()
    assert CHILD not in os.environ, f"{sys.executable} cannot import open_clip: {missing}"
    if not OTHER_PYTHON.exists():
        pytest.skip(f"no {OTHER_PYTHON} (docs/models.md: an environment for open_clip)")
    run = subprocess.run(
        [
            str(OTHER_PYTHON), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
            __file__, "tests/models/test_mobileclip.py",
            "tests/images/test_pixels.py::test_named_models_preprocess_as_open_clip_says",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, env={**os.environ, CHILD: "1"},
    )  # fmt: skip
    summary = " " + (run.stdout.strip().splitlines() or [run.stderr[-2000:]])[-1]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " failed" not in summary and " 1 skipped" in summary, summary  # only that one
