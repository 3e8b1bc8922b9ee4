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
