from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leopard_reid import ImageError
from tests.conftest import spots


def test_embeddings_are_unit_norm_float32_in_order(embedder):
    imgs = [spots(i) for i in range(3)]
    x = embedder.embed(imgs)
    assert x.shape == (3, embedder.dim) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    y = embedder.embed(imgs[::-1])
    np.testing.assert_allclose(x[::-1], y, atol=1e-5)


def test_small_cpu_batches_by_default_give_the_same_embeddings(embedder):
    """Batches of 8 on a CPU (faster per crop there than 32): the embeddings do not depend on the batch."""
    import copy

    assert embedder.device.type == "cpu" and embedder.batch_size == 8
    imgs = [spots(i) for i in range(11)]  # a batch of 8 and one of 3
    big = copy.copy(embedder)
    big.batch_size = 32
    np.testing.assert_allclose(embedder.embed(imgs), big.embed(imgs), atol=1e-6)


def test_threads_and_worker_processes_describe_alike(embedder, tmp_path):
    """In-process describing loads a batch ahead on threads; worker processes give the very same features,
    in input order, with an unreadable file named in its place."""
    from leopard_reid import Embedder

    for i in range(10):
        Image.fromarray(spots(i, (200, 140))).save(tmp_path / f"{i}.png")
    (tmp_path / "5.png").write_bytes(b"not an image")
    table = pd.DataFrame({"path": [f"{i}.png" for i in range(10)]})
    with pytest.warns(UserWarning, match="skipped 1 of 10 image"):
        threaded = embedder.describe(table, root=tmp_path, local={"max_tilt": 1}, on_error="skip")
    workers = Embedder(progress=False, num_workers=2, batch_size=3)
    with pytest.warns(UserWarning, match="skipped 1 of 10 image"):
        forked = workers.describe(table, root=tmp_path, local={"max_tilt": 1}, on_error="skip")
    assert [e.path for e in threaded.errors] == [e.path for e in forked.errors] == ["5.png"]
    assert list(threaded.valid) == list(forked.valid) == [i != 5 for i in range(10)]
    np.testing.assert_allclose(threaded.embeddings[threaded.valid], forked.embeddings[forked.valid], atol=1e-6)
    for a, b in zip(threaded.local, forked.local):
        assert (a is None and b is None) or np.array_equal(a.descriptors, b.descriptors)


def test_paths_pil_arrays_and_tables_agree(embedder, tmp_path):
    arr = spots(3)
    Image.fromarray(arr).save(tmp_path / "a.png")
    from_array = embedder.embed([arr])
    from_pil = embedder.embed([Image.fromarray(arr)])
    from_path = embedder.embed([tmp_path / "a.png"])
    from_table = embedder.embed(pd.DataFrame({"path": ["a.png"]}), root=tmp_path)
    for other in (from_pil, from_path, from_table):
        np.testing.assert_allclose(from_array, other, atol=1e-5)


def test_bbox_crops_before_embedding(embedder, tmp_path):
    big = np.full((400, 600, 3), 90, np.uint8)
    big[100:280, 200:440] = spots(5, (240, 180))
    Image.fromarray(big).save(tmp_path / "frame.png")
    table = pd.DataFrame({"path": ["frame.png"], "bbox": ["[200, 100, 240, 180]"]})
    np.testing.assert_allclose(embedder.embed(table, root=tmp_path), embedder.embed([spots(5, (240, 180))]), atol=1e-5)


def test_grey_images_are_handled(embedder):
    grey = spots(4)[:, :, 0]
    x = embedder.embed([grey])
    assert np.isfinite(x).all()


def test_bad_image_raises_with_path_or_is_skipped(embedder, tmp_path):
    (tmp_path / "bad.jpg").write_text("not an image")
    with pytest.raises(ImageError, match="bad.jpg"):
        embedder.embed([tmp_path / "bad.jpg"])
    with pytest.warns(UserWarning, match="bad.jpg"):
        feats = embedder.describe([spots(1), tmp_path / "bad.jpg", spots(2)], on_error="skip")
    assert feats.valid.tolist() == [True, False, True]
    assert np.isnan(feats.embeddings[1]).all() and np.isfinite(feats.embeddings[[0, 2]]).all()
    assert "not an image" in feats.errors[0].reason


def test_describe_extracts_keypoints_in_the_same_pass(embedder):
    feats = embedder.describe([spots(7)], local=True)
    assert feats.local is not None and len(feats.local[0]) > 20


def test_draft_decoding_close_to_full_decoding(embedder, tmp_path):
    """A box cut from a large JPEG decoded at reduced size embeds like the fully decoded one."""
    from leopard_reid.io import load_image

    frame = np.full((1080, 1920, 3), 120, np.uint8)
    frame[300:900, 400:1300] = np.kron(spots(9, (300, 200)), np.ones((3, 3, 1), np.uint8))
    Image.fromarray(frame).save(tmp_path / "f.jpg", quality=92)
    box = [400, 300, 900, 600]
    draft = load_image(tmp_path / "f.jpg", bbox=box, reduce_to=224)
    full = load_image(tmp_path / "f.jpg", bbox=box)
    assert draft.width < full.width  # really decoded smaller
    a, b = embedder.embed([draft]), embedder.embed([full])
    assert float(a[0] @ b[0]) > 0.99


def test_user_model_is_never_moved(embedder):
    from leopard_reid import Embedder, create_backbone

    model = create_backbone()
    with pytest.raises(ValueError, match="move it yourself"):
        Embedder(model, device="meta")
    e = Embedder(model)
    assert e.model is model and str(e.device) == "cpu"
