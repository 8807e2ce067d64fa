"""Any CLIP by its Hugging Face hub id, in each layout the hub has, from a real hub cache
built here (its own folder structure: refs, snapshots), offline; the hub's refusals from a
stand-in hub on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import cached_repo, through_every_command
from safetensors.torch import save_file

from clipsearch.models.encoder import load_model
from clipsearch.models.hub import HubError, is_hub_id

transformers = pytest.importorskip("transformers")


def hf_tiny(seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=256, num_attention_heads=1,
                         num_hidden_layers=2),
        vision_config=dict(hidden_size=64, intermediate_size=256, num_attention_heads=1,
                           num_hidden_layers=2, image_size=32, patch_size=8),
        projection_dim=32,
    )  # fmt: skip
    return transformers.CLIPModel(config).eval()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(hub))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    return hub


def same_vectors(a, b):
    pixels = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(a.encode_pixels(pixels), b.encode_pixels(pixels), atol=1e-6)
    np.testing.assert_allclose(a.encode_text(["a dog"]), b.encode_text(["a dog"]), atol=1e-6)


def test_a_transformers_repo_by_its_id_is_the_same_model_as_its_folder(cache, tmp_path):
    hf_tiny().save_pretrained(tmp_path / "hf")
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(
        tmp_path / "hf"
    )
    cached_repo(cache, "test-org/clip-tiny", tmp_path / "hf")
    by_id, by_folder = load_model("test-org/clip-tiny"), load_model(str(tmp_path / "hf"))
    assert by_id.name == "test-org/clip-tiny" and by_id.digest == by_folder.digest
    same_vectors(by_id, by_folder)


def test_a_revision_is_a_branch_tag_or_commit(cache, tmp_path):
    hf_tiny(seed=0).save_pretrained(tmp_path / "v0")
    hf_tiny(seed=1).save_pretrained(tmp_path / "v1")
    cached_repo(cache, "test-org/clip-tiny", tmp_path / "v0")
    cached_repo(cache, "test-org/clip-tiny", tmp_path / "v1", revision="v1")
    main, v1 = load_model("test-org/clip-tiny"), load_model("test-org/clip-tiny@v1")
    assert main.digest == load_model(str(tmp_path / "v0")).digest
    assert v1.digest == load_model(str(tmp_path / "v1")).digest != main.digest
    with pytest.raises(HubError, match="not in the cache"):
        load_model("test-org/clip-tiny@v2")


def test_an_open_clip_repo(cache, tmp_path):
    reference = load_model("random:tiny:4")
    folder = tmp_path / "oc"
    folder.mkdir()
    state = {k: v.contiguous() for k, v in reference.model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": {"quick_gelu": True}, "preprocess_cfg": {"mean": [0.5] * 3}})
    )
    cached_repo(cache, "test-org/open-clip-tiny", folder)
    loaded = load_model("test-org/open-clip-tiny")
    assert loaded.preprocessing.mean == (0.5, 0.5, 0.5)  # its own preprocessing, from its config
    assert loaded.digest.startswith(reference.digest) and loaded.digest != reference.digest
    same_vectors(loaded, reference)


def test_a_sentence_transformers_clip(cache, tmp_path):
    hf_tiny().save_pretrained(tmp_path / "st" / "0_CLIPModel")
    modules = [
        {
            "idx": 0,
            "name": "0",
            "path": "0_CLIPModel",
            "type": "sentence_transformers.models.CLIPModel",
        }
    ]
    (tmp_path / "st" / "modules.json").write_text(json.dumps(modules))
    cached_repo(cache, "sentence-test/clip-tiny", tmp_path / "st")
    loaded = load_model("sentence-test/clip-tiny")
    same_vectors(loaded, load_model(str(tmp_path / "st" / "0_CLIPModel")))


def test_a_repo_of_something_else_names_what_it_found(cache, tmp_path):
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file({"x": torch.zeros(2)}, str(folder / "model.safetensors"))
    cached_repo(cache, "test-org/bert", folder)
    with pytest.raises(HubError, match=r"no CLIP clipsearch can read \(files: config.json"):
        load_model("test-org/bert")


def test_a_local_path_is_never_taken_for_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert is_hub_id("openai/clip-vit-base-patch32") and not is_hub_id("runs")
    (tmp_path / "runs" / "clip").mkdir()
    assert not is_hub_id("runs/clip")


class StandInHub(BaseHTTPRequestHandler):
    """Answers as the hub does for a gated repository and a revision that is not there."""

    def do_GET(self):  # noqa: N802
        if "gated-org" in self.path:
            self.send_response(401)
            self.send_header("X-Error-Code", "GatedRepo")
            self.send_header("X-Error-Message", "Access to model gated-org/model is restricted")
        else:
            self.send_response(404)
            self.send_header("X-Error-Code", "RevisionNotFound")
            self.send_header("X-Error-Message", "Invalid rev id: nope")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "no"}')

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stand_in_hub(tmp_path, monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandInHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(
        "huggingface_hub.constants.ENDPOINT", f"http://127.0.0.1:{server.server_port}"
    )
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    yield
    server.shutdown()


def test_the_hubs_refusals_are_one_line(stand_in_hub):
    with pytest.raises(HubError, match="gated or missing; if it is gated, accept its terms"):
        load_model("gated-org/model")
    with pytest.raises(HubError, match="has no revision 'nope'"):
        load_model("test-org/clip@nope")


def test_offline_a_hub_id_fails_at_once_with_the_command_to_run(tmp_path):
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    exe = Path(sys.executable).parent / "clipsearch"
    proc = subprocess.run(
        [exe, "embed", "-t", "hi", "--model", "openai/clip-vit-base-patch32"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "hf download openai/clip-vit-base-patch32" in proc.stderr


def clip_tokenizer_files(folder: Path) -> None:
    """vocab.json and merges.txt as OpenAI's repositories hold them (OpenAI's BPE, the one
    clipsearch ships), and what transformers writes beside them."""
    from clipsearch.models.tokenizer import default_tokenizer

    ours = default_tokenizer()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(ours.encoder))
    merges = "".join(f"{a} {b}\n" for a, b in ours.merges)
    (folder / "merges.txt").write_text("#version: 0.2\n" + merges)
    transformers.CLIPTokenizer.from_pretrained(folder).save_pretrained(folder)


PAPERS_IDS = {  # the founding document's models with the layout of their repositories
    "openai/clip-vit-base-patch32": (32, ""),
    "openai/clip-vit-base-patch16": (16, ""),
    "openai/clip-vit-large-patch14": (14, ""),
    "sentence-transformers/clip-ViT-B-32": (32, "0_CLIPModel"),
}


def papers_repository(cache: Path, tmp_path: Path, repo_id: str):
    """The repository as the hub holds it (pytorch_model.bin, config.json,
    preprocessor_config.json, tokenizer files; a sentence-transformers repository's
    modules.json and 0_CLIPModel/), random weights at a small width with the model's patch
    size: transformers' model for it, and the folder holding its files."""
    patch, sub = PAPERS_IDS[repo_id]
    torch.manual_seed(patch)
    config = transformers.CLIPConfig(
        text_config=dict(hidden_size=64, intermediate_size=256, num_attention_heads=2,
                         num_hidden_layers=2),
        vision_config=dict(hidden_size=64, intermediate_size=256, num_attention_heads=2,
                           num_hidden_layers=2, image_size=patch * 4, patch_size=patch),
        projection_dim=32,
    )  # fmt: skip
    reference = transformers.CLIPModel(config).eval()
    repo = tmp_path / "repo"
    model_dir = repo / sub if sub else repo
    reference.save_pretrained(model_dir)  # config.json; the weights as these repos have them:
    (model_dir / "model.safetensors").unlink()
    torch.save(reference.state_dict(), model_dir / "pytorch_model.bin")
    size = {"shortest_edge": patch * 4}
    processor = transformers.CLIPImageProcessor(size=size, crop_size=patch * 4)
    processor.save_pretrained(model_dir)
    clip_tokenizer_files(model_dir)
    if sub:
        kind = "sentence_transformers.models.CLIPModel"
        module = {"idx": 0, "name": "0", "path": sub, "type": kind}
        (repo / "modules.json").write_text(json.dumps([module]))
        (repo / "config_sentence_transformers.json").write_text(json.dumps({"__version__": {}}))
    cached_repo(cache, repo_id, repo)
    return reference, model_dir


@pytest.mark.parametrize("repo_id", list(PAPERS_IDS))
def test_the_papers_models_by_their_ids_equal_transformers(repo_id, cache, tmp_path):
    """Each hub id of the founding document's list, from a cache in that repository's file
    layout: clipsearch's vectors are transformers' own, text tokenized by transformers'
    tokenizer from the repository's files."""
    reference, model_dir = papers_repository(cache, tmp_path, repo_id)
    side = reference.config.vision_config.image_size
    encoder = load_model(repo_id)
    texts = ["a dog on a beach", "a diagram of a cell", ""]
    tokens = transformers.CLIPTokenizer.from_pretrained(model_dir)(
        texts, padding="max_length", max_length=77, return_tensors="pt"
    )
    pixels = np.random.default_rng(0).standard_normal((2, 3, side, side))
    with torch.no_grad():
        text = reference.get_text_features(input_ids=tokens["input_ids"])
        image = reference.get_image_features(pixel_values=torch.from_numpy(pixels).float())
    unit = torch.nn.functional.normalize
    assert encoder.name == repo_id and encoder.image_size == side
    np.testing.assert_allclose(encoder.encode_text(texts), unit(_tensor(text), dim=-1), atol=1e-5)
    found = encoder.encode_pixels(pixels.astype(np.float32))
    np.testing.assert_allclose(found, unit(_tensor(image), dim=-1), atol=1e-5)


@pytest.mark.parametrize("repo_id", list(PAPERS_IDS))
def test_the_papers_models_by_their_ids_index_answer_serve_and_fine_tune(repo_id, cache, tmp_path):
    papers_repository(cache, tmp_path, repo_id)
    start, tuned = through_every_command(repo_id, tmp_path)
    assert tuned.architecture == start.architecture


def _tensor(output) -> torch.Tensor:
    """transformers 5 returns a model output where 4 returned the tensor."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output
