"""Training: the objective, locks, DDP equivalence, exact resume, and real learning."""

from __future__ import annotations

import json
import os
import socket
import tarfile

import numpy as np
import pytest
import torch
import torch.multiprocessing as tmp
import torch.nn.functional as F
from helpers import make_image
from typer.testing import CliRunner

from clipsearch.cli import app
from clipsearch.images.records import DataError
from clipsearch.models.model import CLIP, CONFIGS
from clipsearch.models.weights import load_dir_weights
from clipsearch.training.data import load_pairs, split
from clipsearch.training.losses import contrastive_loss, step_loss
from clipsearch.training.train import TrainConfig, TrainingError, train
from clipsearch.training.trainable import apply_locks

runner = CliRunner()


def test_loss_equals_direct_computation():
    g = torch.Generator().manual_seed(0)
    image = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    text = F.normalize(torch.randn(5, 8, generator=g), dim=-1)
    scale = torch.tensor(np.log(20.0))
    sim = 20.0 * image.numpy() @ text.numpy().T
    i2t = -np.mean([sim[i, i] - np.log(np.exp(sim[i]).sum()) for i in range(5)])
    t2i = -np.mean([sim[i, i] - np.log(np.exp(sim[:, i]).sum()) for i in range(5)])
    assert contrastive_loss(image, text, scale).item() == pytest.approx((i2t + t2i) / 2, rel=1e-5)


def batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, 32, 32, generator=g)
    tokens = torch.zeros(n, 8, dtype=torch.long)
    tokens[:, 0], tokens[:, 1:6] = 49406, torch.randint(1, 49000, (n, 5), generator=g)
    tokens[:, 6] = 49407
    return pixels, tokens


def test_gradients_reach_both_towers_and_temperature():
    torch.manual_seed(0)
    model = CLIP(CONFIGS["tiny"])
    step_loss(model, *batch()).backward()
    assert model.visual.conv1.weight.grad.abs().sum() > 0
    assert model.token_embedding.weight.grad.abs().sum() > 0
    assert model.logit_scale.grad.abs() > 0


def test_locked_image_tower_gets_no_gradient_except_unlocked_groups():
    torch.manual_seed(0)
    model = CLIP(CONFIGS["tiny"])
    apply_locks(model, lock_image=True, lock_text=False, unlock_last=1)
    step_loss(model, *batch()).backward()
    assert model.visual.conv1.weight.grad is None
    assert all(p.grad is None for p in model.visual.transformer.resblocks.parameters())
    assert model.visual.proj.grad is not None  # the last group: ln_post + projection
    assert model.text_projection.grad is not None
    model2 = CLIP(CONFIGS["tiny"])
    apply_locks(model2, lock_image=False, lock_text=True, unlock_last=0)
    step_loss(model2, *batch()).backward()
    assert all(
        p.grad is None
        for n, p in model2.named_parameters()
        if not n.startswith("visual.") and n != "logit_scale"
    )


def _ddp_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    from clipsearch.training.world import init_world

    init_world()
    torch.manual_seed(0)
    model = CLIP(CONFIGS["tiny"])
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    pixels, tokens = batch(8)
    loss = step_loss(ddp, pixels[rank * 4 : rank * 4 + 4], tokens[rank * 4 : rank * 4 + 4])
    loss.backward()
    torch.save(
        {"loss": loss.detach(), "grads": {n: p.grad for n, p in model.named_parameters()}},
        f"{out}/rank{rank}.pt",
    )
    torch.distributed.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_equals_one_process_on_the_combined_batch(tmp_path):
    tmp.spawn(_ddp_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    model = CLIP(CONFIGS["tiny"])
    loss = step_loss(model, *batch(8))
    loss.backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        assert got["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
        for name, p in model.named_parameters():
            torch.testing.assert_close(got["grads"][name], p.grad, rtol=1e-4, atol=1e-6)


@pytest.fixture
def small_data(tmp_path):
    rows = []
    words = ["red", "green", "blue", "dark", "light", "striped"]
    for i in range(24):
        make_image(tmp_path / "imgs" / f"{i}.png", seed=i, size=(40, 40))
        rows.append({"image": f"imgs/{i}.png", "caption": f"a {words[i % 6]} square number {i}"})
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run_config(data, run_dir, **kw) -> TrainConfig:
    base = dict(
        data=str(data),
        run_dir=str(run_dir),
        arch="tiny",
        epochs=2,
        batch_size=8,
        warmup=2,
        lr=1e-3,
        precision="fp32",
    )
    return TrainConfig(**{**base, **kw})


def state(run_dir) -> dict:
    return load_dir_weights(run_dir).state_dict


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(small_data, tmp_path):
    whole = train(run_config(small_data, tmp_path / "whole"))
    assert whole.steps == 6 and not whole.interrupted
    first = train(run_config(small_data, tmp_path / "split"), stop_after=4)
    assert first.interrupted and first.steps == 4
    second = train(run_config(small_data, tmp_path / "split", resume=True))
    assert second.steps == 6
    a, b = state(tmp_path / "whole"), state(tmp_path / "split")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6)


def test_existing_run_needs_resume(small_data, tmp_path):
    train(run_config(small_data, tmp_path / "r", epochs=1))
    with pytest.raises(TrainingError, match="--resume"):
        train(run_config(small_data, tmp_path / "r", epochs=1))


def test_run_directory_is_a_loadable_model(small_data, tmp_path):
    cfg = run_config(small_data, tmp_path / "r", epochs=1, val_fraction=0.25)
    result = train(cfg)
    result_cli = runner.invoke(app, ["embed", "--model", str(tmp_path / "r"), "-t", "x", "--json"])
    assert result_cli.exit_code == 0, result_cli.output
    assert result.before is not None and result.after is not None
    assert (tmp_path / "r" / "best" / "clipsearch.json").exists()
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert any("validation" in json.loads(line) for line in lines)


def test_missing_images_counted_and_threshold_enforced(tmp_path, small_data):
    rows = small_data.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(rows + [json.dumps({"image": "nope.png", "caption": "gone"})]) + "\n")
    with pytest.raises(DataError, match="1 of 25 rows are unusable"):
        load_pairs(str(bad))
    assert load_pairs(str(bad), max_bad_fraction=0.1).skipped == 1


def test_bad_data_files_have_clear_messages(tmp_path):
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_pairs(str(tmp_path / "empty.csv"))
    (tmp_path / "broken.jsonl").write_text('{"image": "a.png", "caption": "x"}\n{not json\n')
    with pytest.raises(DataError, match="broken.jsonl:2: not valid JSON"):
        load_pairs(str(tmp_path / "broken.jsonl"))
    (tmp_path / "cols.csv").write_text("file_name,words\na.png,hello\n")
    with pytest.raises(DataError, match="--image-column"):
        load_pairs(str(tmp_path / "cols.csv"))
    result = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(tmp_path / "empty.csv"),
            "--arch",
            "tiny",
            "--run-dir",
            str(tmp_path / "run"),
        ],
    )
    assert result.exit_code == 1 and "empty file" in result.stderr


def test_every_data_format(tmp_path):
    for i in range(3):
        make_image(tmp_path / "f" / f"{i}.png", seed=i)
        (tmp_path / "f" / f"{i}.txt").write_text(f"caption {i}")
    (tmp_path / "d.csv").write_text("filepath,title\nf/0.png,zero\nf/1.png,one\n")
    (tmp_path / "d.tsv").write_text("image\tcaption\nf/2.png\ttwo, with comma\n")
    with tarfile.open(tmp_path / "shard-000.tar", "w") as tar:
        for i in range(3):
            tar.add(tmp_path / "f" / f"{i}.png", arcname=f"{i:04d}.png")
            tar.add(tmp_path / "f" / f"{i}.txt", arcname=f"{i:04d}.txt")
    assert [p.caption for p in load_pairs(str(tmp_path / "d.csv")).rows] == ["zero", "one"]
    assert load_pairs(str(tmp_path / "d.tsv")).rows[0].caption == "two, with comma"
    assert len(load_pairs(str(tmp_path / "f")).rows) == 3
    shards = load_pairs(str(tmp_path / "shard-{000..000}.tar")).rows
    assert [p.caption for p in shards] == ["caption 0", "caption 1", "caption 2"]
    from clipsearch.training.data import read_image

    assert read_image(shards[0].image).size == (48, 40)


def test_validation_split_is_stable():
    from clipsearch.training.data import Pair

    pairs = [Pair(f"/img/{i}.jpg", "c") for i in range(1000)]
    train_a, val_a = split(pairs, 0.1)
    train_b, val_b = split(list(reversed(pairs)), 0.1)
    assert {p.image for p in val_a} == {p.image for p in val_b}
    assert 60 < len(val_a) < 140


def test_merge_interpolates(tmp_path):
    r = runner.invoke(
        app,
        [
            "merge",
            "random:tiny:1",
            "random:tiny:2",
            "--alpha",
            "0.25",
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert r.exit_code == 0, r.output
    from clipsearch.models.weights import resolve

    a, b = resolve("random:tiny:1").state_dict, resolve("random:tiny:2").state_dict
    merged = load_dir_weights(tmp_path / "m").state_dict
    torch.testing.assert_close(
        merged["visual.proj"], 0.75 * a["visual.proj"] + 0.25 * b["visual.proj"]
    )


def test_classify_and_eval_commands(tmp_path, small_data):
    img = make_image(tmp_path / "q.png")
    r = runner.invoke(
        app, ["classify", str(img), "--labels", "cat,dog,car", "--model", "random:tiny", "--json"]
    )
    probs = [x["probability"] for x in json.loads(r.stdout)[0]["labels"]]
    assert r.exit_code == 0 and sum(probs) == pytest.approx(1.0, abs=1e-5)
    r = runner.invoke(app, ["eval", "--data", str(small_data), "--model", "random:tiny", "--json"])
    metrics = json.loads(r.stdout)
    assert metrics["n"] == 24 and 0 <= metrics["text_to_image_R@5"] <= 1


@pytest.mark.slow
def test_learns_unseen_concepts_and_fine_tuning_helps(emoji_models):
    """Text->image recall@5 on 192 held-out concepts in an unseen style (chance 2.6%)."""
    scratch, tuned = emoji_models["scratch"], emoji_models["tuned"]
    chance = 5 / scratch.after["n"]
    r5_scratch = scratch.after["text_to_image_R@5"]
    r5_tuned = tuned.after["text_to_image_R@5"]
    print(
        f"\nemoji R@5 on unseen concepts, unseen style: chance {chance:.1%}, "
        f"from scratch {r5_scratch:.1%} (before {scratch.before['text_to_image_R@5']:.1%}), "
        f"after fine-tuning on that style {r5_tuned:.1%}"
    )
    assert r5_scratch >= 2 * chance
    assert r5_tuned >= 1.5 * r5_scratch


def test_resume_refuses_a_state_file_that_carries_code(small_data, tmp_path):
    first = train(run_config(small_data, tmp_path / "r"), stop_after=2)
    assert first.interrupted
    torch.save({"evil": object()}, tmp_path / "r" / "state.pt")
    with pytest.raises(TrainingError, match="not a training state clipsearch can read") as e:
        train(run_config(small_data, tmp_path / "r", resume=True))
    assert "weights_only" not in str(e.value)
