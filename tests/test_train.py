"""Tests for leopard_reid.train: config, augmentation, losses, checkpoints, resume, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from leopard_reid.train import TrainConfig, create_model, fine_tune, train_transform  # noqa: E402

TINY = dict(epochs=1, batch_size=6, image_size=64, embedding_size=32, num_workers=0, progress=False,
            warmup_epochs=0.0, lr=1e-3, threads=1)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a shared 2-core CPU, 2 OpenMP threads can be 10x slower on these tiny batches."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """4 synthetic individuals x 3 sightings, small crops."""
    from leopard_reid.synthetic import generate

    root = tmp_path_factory.mktemp("tiny")
    df = generate(root, n_individuals=4, sightings_per_individual=3, seed=3, size=(128, 96))
    return root, df


@pytest.fixture(scope="module")
def trained(tiny: tuple[Path, object], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One epoch on the tiny set (no validation: the checkpoint is the last epoch); returns (folder, model)."""
    root, df = tiny
    out = tmp_path_factory.mktemp("ckpt")
    seen = {}
    folder = fine_tune(TrainConfig(**TINY), df, root=root, out=out, val=0,
                       callback=lambda rec, model: seen.update(rec=rec, model=model))
    return folder, seen["model"]


def _flatten(t: object) -> list[object]:
    out = [t]
    for attr in ("transforms",):
        for sub in getattr(t, attr, None) or []:
            out += _flatten(sub)
    return out


def test_config_json_roundtrip() -> None:
    cfg = TrainConfig(loss="triplet", margin=0.25, aug_scale=(0.4, 0.9), image_size=96, device="cpu")
    again = TrainConfig.from_json(cfg.to_json())
    assert again == cfg
    assert isinstance(again.aug_scale, tuple)
    assert TrainConfig.from_dict(json.loads(TrainConfig().to_json())) == TrainConfig()
    with pytest.raises(ValueError, match="unknown"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError):
        TrainConfig(loss="softmax")  # type: ignore[arg-type]


def test_augmentation_never_flips() -> None:
    data_cfg = {"input_size": (3, 64, 64), "mean": (0.5,) * 3, "std": (0.5,) * 3, "interpolation": "bicubic"}
    for cfg in (TrainConfig(), TrainConfig(augment=False)):
        steps = _flatten(train_transform(cfg, data_cfg))
        names = [type(s).__name__ for s in steps]
        assert not any("flip" in n.lower() for n in names), names
        assert "flip" not in repr(train_transform(cfg, data_cfg)).lower()
    names = [type(s).__name__ for s in _flatten(train_transform(TrainConfig(), data_cfg))]
    assert {"RandomResizedCrop", "RandomRotation", "RandomGrayscale", "ColorJitter", "GaussianBlur"} <= set(names)


@pytest.mark.parametrize("loss", ["arcface", "triplet"])
def test_loss_decreases_on_a_fixed_batch(tiny: tuple[Path, object], loss: str) -> None:
    from leopard_reid.embed import Embedder
    from leopard_reid.io import as_records, load_image
    from leopard_reid.train.data import class_labels as _labels
    from leopard_reid.train.losses import make_loss as _make_loss

    root, df = tiny
    torch.manual_seed(0)
    cfg = TrainConfig(**{**TINY, "loss": loss})
    model = create_model(cfg)
    tf = Embedder(model, num_workers=0).transform
    x = torch.stack([tf(load_image(r.source, bbox=r.bbox)) for r in as_records(df, root=root)])
    labs = _labels(df, sides=True)
    y = torch.as_tensor(np.unique(labs, return_inverse=True)[1])
    loss_fn = _make_loss(cfg, int(y.max()) + 1, 32)
    opt = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-3)

    def measure() -> float:
        model.eval()
        with torch.no_grad():
            return float(loss_fn(model(x), y))

    first = measure()
    for _ in range(5):
        model.train()
        value = loss_fn(model(x), y)
        opt.zero_grad()
        value.backward()
        opt.step()
    assert measure() < first


def test_checkpoint_reloads_bit_exactly(trained: tuple[Path, object], tiny: tuple[Path, object]) -> None:
    from safetensors.torch import load_file

    from leopard_reid.backbones import create_backbone
    from leopard_reid.embed import Embedder

    folder, model = trained
    root, df = tiny
    for name in ("model.safetensors", "config.json", "history.csv", "training_curve.png", "last.safetensors",
                 "last_state.safetensors", "last_state.json"):
        assert (folder / name).is_file(), name
    assert not [p for p in folder.iterdir() if p.suffix in (".pt", ".pth", ".pkl", ".bin", ".tmp")]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["backbone"] == "efficientnet_lite0" and cfg["num_classes"] == 32
    assert cfg["pretrained_cfg"]["input_size"] == [3, 64, 64]
    assert TrainConfig.from_dict(cfg["train_config"]) == TrainConfig(**TINY)
    assert cfg["library_version"]

    reference = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    assert set(load_file(str(folder / "model.safetensors"))) == set(reference)
    for ckpt in (folder, folder / "model.safetensors"):
        loaded = create_backbone(checkpoint=ckpt).state_dict()
        assert set(loaded) == set(reference)
        for k, v in reference.items():
            assert torch.equal(loaded[k], v), k

    want = Embedder(model, num_workers=0).embed(df, root=root)
    assert want.shape == (len(df), 32)
    device = str(next(model.parameters()).device)  # cpu here; cuda where fine_tune found a GPU
    for ckpt in (folder, folder / "model.safetensors"):
        emb = Embedder(checkpoint=ckpt, device=device, num_workers=0)
        assert emb.data_config["input_size"] == (3, 64, 64)
        got = emb.embed(df, root=root)
        np.testing.assert_array_equal(got, want)
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_cli_evaluate_with_checkpoint(trained: tuple[Path, object], tiny: tuple[Path, object], capsys) -> None:
    from leopard_reid.cli import main

    folder, _ = trained
    root, _ = tiny
    csv = str(root / "metadata.csv")
    results = []
    for ckpt in (folder, folder / "model.safetensors"):
        capsys.readouterr()
        assert main(["evaluate", "--method", "global", "--checkpoint", str(ckpt), "--metadata", csv, "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        # 4 leopards x 3 photos: two of one flank each, so 8 leave-one-out queries
        assert result["method"] == "global" and result["n_images"] == 12 and result["n_queries"] == 8
        results.append({k: v for k, v in result.items() if k != "seconds"})
    assert results[0] == results[1]  # the folder and its weights file are one model


def test_resume_continues_from_last_epoch(tiny: tuple[Path, object], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    root, df = tiny
    cfg = TrainConfig(**{**TINY, "epochs": 2, "patience": 0})
    full = fine_tune(cfg, df, root=root, out=tmp_path / "full", val=0.5)

    def interrupt(rec: dict, model: object) -> None:
        if rec["epoch"] == 1:
            raise KeyboardInterrupt

    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        fine_tune(cfg, df, root=root, out=part, val=0.5, callback=interrupt)
    assert json.loads((part / "last_state.json").read_text())["epoch"] == 1
    with pytest.raises(FileExistsError):
        fine_tune(cfg, df, root=root, out=part, val=0.5)
    epochs = []
    fine_tune(cfg, df, root=root, out=part, val=0.5, resume=True, callback=lambda rec, m: epochs.append(rec["epoch"]))
    assert epochs == [2]  # only the missing epoch ran
    state = json.loads((part / "last_state.json").read_text())
    assert state["epoch"] == 2 and [h["epoch"] for h in state["history"]] == [0, 1, 2]
    a, b = load_file(str(full / "last.safetensors")), load_file(str(part / "last.safetensors"))
    for k in a:  # same seeds, same per-epoch shuffles and augmentations: the resumed run matches
        assert torch.equal(a[k], b[k]), k
    hist = json.loads((part / "config.json").read_text())["history"]
    assert hist[0]["val_top1"] is not None and hist[-1]["val_mAP"] is not None
    with pytest.raises(ValueError, match="same training config"):
        fine_tune(cfg.replace(lr=0.1), df, root=root, out=part, val=0.5, resume=True)


def test_cli_train(tiny: tuple[Path, object], tmp_path: Path, capsys) -> None:
    from leopard_reid.cli import main

    root, _ = tiny
    out = tmp_path / "cli"
    rc = main(["train", "--metadata", str(root / "metadata.csv"), "--out", str(out), "--epochs", "1",
               "--batch-size", "6", "--embedding-size", "16", "--image-size", "64", "--loss", "triplet",
               "--workers", "0", "--threads", "1", "--val-fraction", "0"])
    assert rc == 0
    assert (out / "model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["num_classes"] == 16
    assert main(["train", "--out", str(out)]) == 2


def test_import_is_cheap() -> None:
    code = "import sys, leopard_reid.train; print(sorted(set(sys.modules) & {'torch', 'timm', 'matplotlib'}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fine_tune_leaves_the_global_torch_rng_alone(tiny: tuple[Path, object], tmp_path: Path) -> None:
    root, df = tiny
    torch.manual_seed(1234)
    before = torch.get_rng_state().clone()
    fine_tune(TrainConfig(**TINY), df, root=root, out=tmp_path / "ft", val=0)
    assert torch.equal(torch.get_rng_state(), before)
