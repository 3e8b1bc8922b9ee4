from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from leopard_reid import Embedder
from tests.conftest import spots


@pytest.fixture()
def folder(tmp_path):
    for i in range(3):
        Image.fromarray(spots(i)).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.jpg").write_text("no")
    return tmp_path


def test_cache_hit_returns_identical_embeddings_and_keypoints(folder, tmp_path):
    paths = [folder / f"{i}.png" for i in range(3)]
    first = Embedder(cache=tmp_path / "cache", progress=False).describe(paths, local=True)
    second_embedder = Embedder(cache=tmp_path / "cache", progress=False)
    assert len(second_embedder.cache) == 3
    second = second_embedder.describe(paths, local=True)
    np.testing.assert_array_equal(first.embeddings, second.embeddings)
    for a, b in zip(first.local, second.local):
        np.testing.assert_array_equal(a.descriptors, b.descriptors)
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        assert a.image_size == b.image_size


def test_cache_keys_on_content_box_and_options(folder, tmp_path):
    e = Embedder(cache=tmp_path / "cache", progress=False)
    e.embed([folder / "0.png"])
    assert len(e.cache) == 1
    Image.fromarray(spots(9)).save(folder / "0.png")  # same name, new content: a miss
    e.embed([folder / "0.png"])
    e.describe([folder / "0.png"], local=True)  # same content, keypoints asked: another key
    assert len(e.cache) == 3
    plain = e.describe([folder / "0.png"], local={"max_tilt": 1})  # other keypoint options: another key
    assert len(e.cache) == 4
    fresh = Embedder(progress=False).describe([folder / "0.png"], local={"max_tilt": 1})
    assert np.array_equal(plain.local[0].descriptors, fresh.local[0].descriptors)
    with pytest.raises(TypeError, match="max_tlit"):
        e.describe([folder / "0.png"], local={"max_tlit": 1})


def test_cache_with_bad_files_skips_and_reports(folder, tmp_path):
    e = Embedder(cache=tmp_path / "cache", progress=False)
    with pytest.warns(UserWarning):
        f = e.describe([folder / "1.png", folder / "bad.jpg", folder / "missing.png"], on_error="skip")
    assert f.valid.tolist() == [True, False, False] and len(f.errors) == 2
    assert len(e.cache) == 1
