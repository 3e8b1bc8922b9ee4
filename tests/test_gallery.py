"""Gallery files are never lost or silently corrupted; editing and search are exact."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from leopard_reid.gallery import FORMAT_VERSION, Gallery, GalleryError
from leopard_reid.local import LocalFeatures
from tests.conftest import spots

# ---------------------------------------------------------------------- helpers


def tiny_gallery(seed: int = 0, n: int = 3, dim: int = 4, local: bool = True) -> Gallery:
    """A few exemplars with keypoints, boxes, sides, a datetime column and a calibration: every part of the file."""
    rng = np.random.default_rng(seed)
    feats = None
    if local:
        feats = [
            LocalFeatures(rng.random((k, 4)).astype(np.float32), rng.integers(0, 256, (k, 128), dtype=np.uint8),
                          (200 + k, 150))
            for k in [2, 0, 1, 3][:n]
        ]
    meta = pd.DataFrame({
        "path": [f"img/{seed}_{i}.jpg" for i in range(n)],
        "bbox": [(1, 2, 30, 40), None, "[0, 0, 5, 5]", None][:n],
        "side": ["left", "right", "unknown", "left"][:n],
        "datetime": pd.to_datetime(["2024-01-02 03:04:05", "2024-02-03 00:00:00", "2024-03-04 10:00:00",
                                    "2024-04-05 00:00:00"][:n]),
        "score": np.arange(n, dtype=np.float64) / 2,
    })
    g = Gallery.from_embeddings(rng.normal(size=(n, dim)), ["a", "b", "a", "c"][:n], metadata=meta,
                                backbone="efficientnet_lite0", weights_sha256="0123456789abcdef", local=feats)
    g.calibration = {"coef": [4.0, 2.5], "intercept": -8.0, "threshold": 0.5 + seed / 100}
    return g


def assert_same(a: Gallery, b: Gallery) -> None:
    assert a.embeddings.dtype == b.embeddings.dtype == np.float32
    assert np.array_equal(a.embeddings, b.embeddings)  # bit-equal
    pd.testing.assert_frame_equal(a.metadata, b.metadata)
    assert (a.backbone, a.weights_sha256, a.calibration) == (b.backbone, b.weights_sha256, b.calibration)
    assert (a.local is None) == (b.local is None)
    for fa, fb in zip(a.local or [], b.local or []):
        assert np.array_equal(fa.keypoints, fb.keypoints) and fa.keypoints.dtype == fb.keypoints.dtype
        assert np.array_equal(fa.descriptors, fb.descriptors) and fa.descriptors.dtype == fb.descriptors.dtype
        assert fa.image_size == fb.image_size


def header(path: Path) -> dict:
    import struct

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])


def temporaries(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


# ---------------------------------------------------------------------- damaged files
@pytest.mark.parametrize("keypoints", ["memory", "disk"])
def test_every_flipped_byte_is_refused(tmp_path, keypoints):
    path = tmp_path / "g.safetensors"
    tiny_gallery().save(path)
    raw = path.read_bytes()
    assert len(raw) < 6000  # small enough to try every position
    Gallery.load(path, keypoints=keypoints)
    fd = os.open(path, os.O_RDWR)
    missed = []
    try:
        for pos in range(len(raw)):
            for mask in (0x01, 0x80, 0xFF, 0x20 ^ 0x09):  # low bit, high bit, all bits, space -> tab
                os.pwrite(fd, bytes([raw[pos] ^ mask]), pos)
                try:
                    Gallery.load(path, keypoints=keypoints)
                    missed.append((pos, mask))
                except GalleryError as err:
                    assert str(path) in str(err)
            os.pwrite(fd, raw[pos : pos + 1], pos)
    finally:
        os.close(fd)
    assert not missed, f"undetected changes at (position, xor mask): {missed[:10]}"
    assert_same(Gallery.load(path, keypoints=keypoints), tiny_gallery())


@pytest.mark.parametrize("keypoints", ["memory", "disk"])
def test_truncated_or_padded_file_is_refused(tmp_path, keypoints):
    path = tmp_path / "g.safetensors"
    tiny_gallery().save(path)
    raw = path.read_bytes()
    for cut in sorted({0, 1, 7, 8, 9, 100, len(raw) // 2, len(raw) - 8, len(raw) - 1}):
        path.write_bytes(raw[:cut])
        with pytest.raises(GalleryError, match="damaged or not a leopard_reid gallery"):
            Gallery.load(path, keypoints=keypoints)
    path.write_bytes(raw + b"\0")
    with pytest.raises(GalleryError):
        Gallery.load(path, keypoints=keypoints)


def test_keypoints_left_on_disk_match_as_in_memory(tmp_path):
    """``Gallery.load(keypoints="disk")`` keeps no exemplar's keypoints in memory, reads them from the file
    as matching needs them, and matches every query exactly as the gallery loaded into memory does; saved
    again, it writes the same content."""
    from leopard_reid import Matcher
    from leopard_reid.local import extract_features
    from leopard_reid.local.store import DiskFeatures

    from .test_local import spot_pattern, warp

    images = [spot_pattern(700 + i) for i in range(6)]
    feats = [extract_features(im) for im in images]
    rng = np.random.default_rng(0)
    g = Gallery.from_embeddings(rng.normal(size=(6, 8)), [f"L{i}" for i in range(6)], local=feats)
    g.save(tmp_path / "g.lrg")
    mem, disk = Gallery.load(tmp_path / "g.lrg"), Gallery.load(tmp_path / "g.lrg", keypoints="disk")
    assert all(isinstance(f, DiskFeatures) for f in disk.local)
    assert_same(disk, mem)
    assert disk.checksum() == mem.checksum()
    q = [extract_features(warp(im, angle=8.0, scale=0.7, seed=i)) for i, im in enumerate(images)]
    from leopard_reid.embed import Features

    queries = Features(names=[str(i) for i in range(6)], embeddings=rng.normal(size=(6, 8)).astype(np.float32),
                       local=q, valid=np.ones(6, bool))
    want = Matcher(method="local").fit(mem).scores(queries).final
    got = Matcher(method="local").fit(disk).scores(queries).final
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.argmax(got, axis=1), np.arange(6))
    disk.save(tmp_path / "again.lrg")
    assert_same(Gallery.load(tmp_path / "again.lrg"), mem)
    with pytest.raises(ValueError, match="keypoints must be"):
        Gallery.load(tmp_path / "g.lrg", keypoints="mmap")


def test_damaged_message_names_file_and_backup(tmp_path):
    path = tmp_path / "g.safetensors"
    g = tiny_gallery()
    g.save(path)
    g.save(path)  # second save keeps a .bak
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x10  # inside the arrays
    path.write_bytes(bytes(raw))
    with pytest.raises(GalleryError) as info:
        Gallery.load(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: damaged") and "checksum mismatch in array" in msg and "g.safetensors.bak" in msg
    assert_same(Gallery.load(tmp_path / "g.safetensors.bak"), g)


def test_not_a_gallery(tmp_path):
    from safetensors.numpy import save_file

    with pytest.raises(GalleryError, match="not found"):
        Gallery.load(tmp_path / "none.safetensors")
    with pytest.raises(GalleryError, match="is a folder"):
        Gallery.load(tmp_path)
    (tmp_path / "text").write_text("hello, I am a CSV\n")
    with pytest.raises(GalleryError, match="damaged or not a leopard_reid gallery"):
        Gallery.load(tmp_path / "text")
    save_file({"x": np.zeros(3, np.float32)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(GalleryError, match="damaged or not a leopard_reid gallery"):
        Gallery.load(tmp_path / "plain.safetensors")


def _rewrite_manifest(path: Path, change) -> None:
    """Rewrite a gallery's manifest (with a valid checksum), as a different leopard_reid would write it."""
    import hashlib
    import struct

    from safetensors.numpy import load, save

    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    meta = json.loads(raw[8 : 8 + n])["__metadata__"]
    manifest = json.loads(meta["leopard_reid"])
    change(manifest)
    text = json.dumps(manifest)
    checksum = hashlib.sha256(text.encode()).hexdigest()
    path.write_bytes(save(load(raw), metadata={"leopard_reid": text, "checksum": checksum}))


def test_unknown_format_version_is_refused_clearly(tmp_path):
    path = tmp_path / "g.safetensors"
    tiny_gallery().save(path)
    _rewrite_manifest(path, lambda m: m.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(GalleryError) as info:
        Gallery.load(path)
    msg = str(info.value)
    assert f"format version {FORMAT_VERSION + 1}" in msg and "upgrade leopard_reid" in msg and str(path) in msg
    _rewrite_manifest(path, lambda m: m.update(format_version="one"))
    with pytest.raises(GalleryError, match="format version 'one' is not supported"):
        Gallery.load(path)


def test_consistent_but_wrong_manifest_is_refused(tmp_path):
    path = tmp_path / "g.safetensors"
    tiny_gallery().save(path)
    _rewrite_manifest(path, lambda m: m.update(n_exemplars=5))
    with pytest.raises(GalleryError, match="inconsistent contents"):
        Gallery.load(path)
    tiny_gallery().save(path, overwrite=True)
    _rewrite_manifest(path, lambda m: m["arrays"]["embeddings"].update(shape=[4, 3]))
    with pytest.raises(GalleryError, match="manifest says"):
        Gallery.load(path)


def test_loading_never_unpickles(tmp_path):
    """The loader reads safetensors + JSON only: a pickle named like a gallery is just an unreadable file."""
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.safetensors"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(GalleryError):
        Gallery.load(path)
    assert not marker.exists()


def test_pickled_checkpoint_is_refused(tmp_path):
    """create_backbone(checkpoint=...) loads .pt files with weights_only=True: no code runs."""
    import pickle

    import torch

    from leopard_reid import create_backbone

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "model.pt"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(pickle.UnpicklingError):
        create_backbone("efficientnet_lite0", checkpoint=path)
    assert not marker.exists()


# ---------------------------------------------------------------------- saving safely
def test_save_keeps_backup_and_refuses_foreign_changes(tmp_path):
    path = tmp_path / "g.safetensors"
    g1, g2 = tiny_gallery(1, n=4), tiny_gallery(2)
    g1.save(path)
    assert not (tmp_path / "g.safetensors.bak").exists()
    with pytest.raises(GalleryError, match="not the version this gallery was loaded from"):
        g2.save(path)  # a different gallery never overwrites silently
    # two editors load the same file; the second to save is refused
    a, b = Gallery.load(path), Gallery.load(path)
    a.rename("a", "A").save(path)
    assert_same(Gallery.load(tmp_path / "g.safetensors.bak"), g1)
    with pytest.raises(GalleryError, match="changed by another run"):
        b.remove("b").save(path)
    assert_same(Gallery.load(path), a)
    b.save(path, overwrite=True)
    assert_same(Gallery.load(path), b)
    assert_same(Gallery.load(tmp_path / "g.safetensors.bak"), a)
    b.merge("c", "a").save(path)  # the saver may save again
    assert_same(Gallery.load(path), b)
    assert temporaries(tmp_path) == []


def test_save_respects_permissions(tmp_path):
    path = tmp_path / "g.safetensors"
    old = os.umask(0o022)
    try:
        tiny_gallery().save(path)
        assert path.stat().st_mode & 0o777 == 0o644  # not mkstemp's owner-only 0600
        path.chmod(0o640)
        Gallery.load(path).save(path)
        assert path.stat().st_mode & 0o777 == 0o640
        assert (tmp_path / "g.safetensors.bak").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


@pytest.mark.parametrize("fail_at", ["fsync1", "fsync2", "replace", "write"])
def test_failed_save_leaves_previous_gallery_intact(tmp_path, monkeypatch, fail_at):
    path = tmp_path / "g.safetensors"
    old = tiny_gallery(1)
    old.save(path)
    old.save(path)
    before, bak_before = path.read_bytes(), (tmp_path / "g.safetensors.bak").read_bytes()
    calls = {"n": 0}
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        calls["n"] += 1
        if fail_at == f"fsync{calls['n']}":
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    def replace(src, dst):
        if fail_at == "replace" and str(dst) == str(path):
            raise KeyboardInterrupt  # killed between fsync and rename
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    if fail_at == "write":
        import io as _io

        real_write = _io.BufferedWriter.write

        class Boom(_io.BufferedWriter):
            def write(self, data):
                if len(data) > 1000:
                    real_write(self, data[: len(data) // 2])
                    raise OSError(5, "I/O error")
                return real_write(self, data)

        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Boom(real_fdopen(fd, "rb+", buffering=0)))
    new = tiny_gallery(2, n=4)
    with pytest.raises((OSError, KeyboardInterrupt)):
        new.save(path, overwrite=True)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert_same(Gallery.load(path), old)
    assert (tmp_path / "g.safetensors.bak").read_bytes() in (bak_before, before)
    assert temporaries(tmp_path) == []
    new.save(path, overwrite=True)  # and the next save works
    assert_same(Gallery.load(path), new)


_KILL_SCRIPT = """
import os, sys, time, numpy as np
sys.path.insert(0, {tests!r})
from test_gallery import tiny_gallery
real = os.fsync
def slow_fsync(fd):
    if os.fstat(fd).st_size > 1000 and os.path.exists({ready!r}) is False:
        open({ready!r}, "w").close()
        time.sleep(60)
    return real(fd)
os.fsync = slow_fsync
tiny_gallery(2, n=4).save({path!r}, overwrite=True)
"""


def test_save_killed_mid_write_leaves_previous_gallery(tmp_path):
    path = tmp_path / "g.safetensors"
    old = tiny_gallery(1)
    old.save(path)
    ready = tmp_path / "ready"
    code = _KILL_SCRIPT.format(tests=str(Path(__file__).parent), ready=str(ready), path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 60
        while not ready.exists() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the writer never reached the write"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert_same(Gallery.load(path), old)  # the old gallery, complete
    assert temporaries(tmp_path)  # a killed process cannot clean up...
    Gallery.load(path).save(path)  # ...so the next writer (holding the lock) does
    assert temporaries(tmp_path) == []
    assert_same(Gallery.load(path), old)


def _save_many(path: str, seed: int, times: int) -> None:
    g = tiny_gallery(seed, n=2 + seed % 3)
    for _ in range(times):
        g.save(path, overwrite=True)


def test_concurrent_writers_leave_one_complete_gallery(tmp_path):
    path = tmp_path / "g.safetensors"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_save_many, args=(str(path), seed, 10)) for seed in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    final = Gallery.load(path)
    assert any(np.array_equal(final.embeddings, tiny_gallery(s, n=2 + s % 3).embeddings) for s in (1, 2))
    Gallery.load(tmp_path / "g.safetensors.bak")  # the backup is complete too
    assert temporaries(tmp_path) == []


def test_lock_timeout_is_a_gallery_error(tmp_path):
    from filelock import FileLock

    path = tmp_path / "g.safetensors"
    with FileLock(str(path) + ".lock"):
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()

        def child():
            try:
                tiny_gallery().save(path, lock_timeout=0.2)
                q.put("saved")
            except GalleryError as err:
                q.put(str(err))

        p = ctx.Process(target=child)
        p.start()
        msg = q.get(timeout=60)
        p.join()
    assert "another process has been saving" in msg
    assert not path.exists()


# ---------------------------------------------------------------------- round trip with the real model
@pytest.fixture(scope="module")
def lite0():
    from leopard_reid import Embedder

    return Embedder(progress=False, num_workers=0, batch_size=8)


def test_embed_save_load_round_trip_is_exact(tmp_path, lite0):
    from leopard_reid import read_metadata

    for i in range(4):
        Image.fromarray(spots(100 + i)).save(tmp_path / f"L{i}.png")
    (tmp_path / "meta.csv").write_text(
        "path,identity,bbox,side,camera,datetime\n"
        "L0.png,L-1,\"[10, 5, 180, 140]\",left,cam1,2024-05-01 06:00\n"
        "L1.png,L-1,,right,cam2,\n"
        "L2.png,L-2,0 0 150 120,L,cam1,2024-05-03 22:10\n"
        "L3.png,L-3,,,cam3,\n"
    )
    meta = read_metadata(tmp_path / "meta.csv", require=("path", "identity"))
    g = Gallery.build(lite0, meta, root=tmp_path, local=True)
    assert len(g) == 4 and g.dim == lite0.dim and all(len(f) > 10 for f in g.local)
    g.calibration = {"coef": [3.5, 2.0], "intercept": -7.25, "threshold": 0.61, "source": "test"}
    path = g.save(tmp_path / "out" / "gallery.safetensors")
    back = Gallery.load(path)
    assert_same(back, g)
    assert back.metadata["bbox"].tolist() == [(10, 5, 180, 140), None, (0, 0, 150, 120), None]
    assert back.metadata["side"].tolist() == ["left", "right", "left", "unknown"]
    back.check_embedder(lite0)  # same weights: accepted
    # a second round trip changes nothing (same manifest and arrays; safetensors may order header keys freely)
    again = back.save(tmp_path / "again.safetensors")
    assert header(again) == header(path)
    assert_same(Gallery.load(again), g)


def test_round_trip_of_synthetic_and_empty_galleries(tmp_path):
    for i, g in enumerate([tiny_gallery(3), tiny_gallery(4, local=False), Gallery(backbone="x")]):
        path = g.save(tmp_path / f"{i}.safetensors")
        assert_same(Gallery.load(path), g)
    assert Gallery.load(tmp_path / "2.safetensors").dim is None
    back = Gallery.load(tmp_path / "0.safetensors")
    assert str(back.metadata["datetime"].dtype).startswith("datetime64")
    assert back.metadata["datetime"].iloc[0] == pd.Timestamp("2024-01-02 03:04:05")


def test_other_backbone_is_refused(lite0):
    g = tiny_gallery()  # "built" by weights 0123456789abcdef
    with pytest.raises(GalleryError, match="cannot be compared"):
        g.check_embedder(lite0)


def test_add_refuses_mismatches():
    g = tiny_gallery(dim=4)
    with pytest.raises(GalleryError, match="dimension 5 cannot join a gallery of dimension 4"):
        g.add(np.ones((1, 5)), ["x"], local=[g.local[0]])
    with pytest.raises(GalleryError, match="NaN"):
        g.add(np.full((1, 4), np.nan), ["x"], local=[g.local[0]])
    with pytest.raises(GalleryError, match="2 embeddings but 1 identities"):
        g.add(np.ones((2, 4)), ["x"])
    with pytest.raises(GalleryError, match="has keypoint features"):
        g.add(np.ones((1, 4)), ["x"])
    with pytest.raises(GalleryError, match="2-D"):
        g.add(np.ones(4), ["x"])
    assert len(g) == 3  # nothing half-added
    g.add(np.ones((1, 4)), ["x"], local=[g.local[0]])
    assert len(g) == 4 and np.allclose(g.embeddings[-1], 0.5)


def test_remove_rename_merge():
    g = tiny_gallery(n=4)  # identities a, b, a, c
    assert g.identities == ["a", "b", "c"]
    local_before = [f.image_size for f in g.local]
    emb_before = g.embeddings.copy()
    with pytest.raises(GalleryError, match="unknown identity 'zz'"):
        g.remove("zz")
    with pytest.raises(GalleryError, match="already exists: use merge"):
        g.rename("a", "b")
    g.rename("a", "L-1")
    assert g.labels.tolist() == ["L-1", "b", "L-1", "c"]
    g.merge("c", "b")
    assert g.labels.tolist() == ["L-1", "b", "L-1", "b"]
    g.remove("L-1")
    assert g.labels.tolist() == ["b", "b"]
    assert np.array_equal(g.embeddings, emb_before[[1, 3]])
    assert [f.image_size for f in g.local] == [local_before[1], local_before[3]]
    assert g.metadata["path"].tolist() == ["img/0_1.jpg", "img/0_3.jpg"]
    with pytest.raises(GalleryError, match="unknown identity"):
        g.merge("b", "nobody")
    g.remove("b")
    assert len(g) == 0 and g.identities == []


# ---------------------------------------------------------------------- search
def brute_force(q: np.ndarray, emb: np.ndarray, labels: np.ndarray, k: int):
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    s = qn @ emb.T
    out = []
    for row in s:
        best = {}
        for j, lab in enumerate(labels):
            if lab not in best or row[j] > row[best[lab]]:
                best[lab] = j
        ranked = sorted(best.items(), key=lambda kv: -row[kv[1]])[:k]
        out.append([(lab, float(row[j]), j) for lab, j in ranked])
    return out


@pytest.mark.parametrize("block_size", [None, 1, 7, 37, 1000])
@pytest.mark.parametrize("top_k", [1, 5, 100])
def test_search_equals_brute_force(block_size, top_k):
    rng = np.random.default_rng(block_size or 0)
    n_ids = 30
    labels = rng.integers(0, n_ids, 150).astype(str)
    g = Gallery.from_embeddings(rng.normal(size=(150, 16)), labels,
                                metadata=pd.DataFrame({"path": [f"p{i}" for i in range(150)]}))
    q = rng.normal(size=(37, 16)).astype(np.float32)
    res = g.search(q, top_k=top_k, block_size=block_size)
    expected = brute_force(q, g.embeddings, g.labels, top_k)
    k = min(top_k, len(set(labels)))
    assert len(res) == 37 * k
    for qi, exp in enumerate(expected):
        got = res[res["query"] == qi].sort_values("rank")
        assert got["rank"].tolist() == list(range(1, k + 1))
        assert got["identity"].tolist() == [e[0] for e in exp]
        assert np.allclose(got["score"], [e[1] for e in exp], atol=1e-5)
        assert got["exemplar_index"].tolist() == [e[2] for e in exp]
        assert got["exemplar"].tolist() == [f"p{e[2]}" for e in exp]



def test_identity_groups_best_is_max_and_first_argmax_per_identity():
    """Ties, masked (-inf) pairs, failed rows and NaN: as a plain max/argmax over each identity's exemplars."""
    from leopard_reid.gallery import IdentityGroups as _IdentityGroups

    rng = np.random.default_rng(3)
    labels = np.array(["b", "a", "c", "a", "b", "a", "d"], dtype=object)
    s = rng.integers(0, 3, (50, len(labels))).astype(np.float64)  # small integers: many ties
    s[rng.random(s.shape) < 0.3] = -np.inf
    s[rng.random(s.shape) < 0.05] = np.nan
    s[0] = -np.inf
    groups = _IdentityGroups(labels)
    best, arg = groups.best(s)
    assert groups.names.tolist() == ["a", "b", "c", "d"] and best.shape == arg.shape == (50, 4)
    for k, name in enumerate(groups.names):
        cols = np.flatnonzero(labels == name)
        assert np.array_equal(best[:, k], s[:, cols].max(axis=1), equal_nan=True)
        assert np.array_equal(arg[:, k], cols[np.argmax(s[:, cols], axis=1)])

def test_search_refuses_bad_queries():
    g = tiny_gallery(dim=4)
    assert len(g.search(np.ones(4))) == 2  # one query, 2 identities (a, b)
    with pytest.raises(GalleryError, match="query dimension 5"):
        g.search(np.ones((2, 5)))
    with pytest.raises(GalleryError, match="block_size"):
        g.search(np.ones((2, 4)), block_size=0)
    with pytest.raises(GalleryError, match="top_k"):
        g.search(np.ones((2, 4)), top_k=0)
    with pytest.raises(GalleryError, match="NaN"):
        g.search(np.full((1, 4), np.nan))
    with pytest.raises(GalleryError, match="empty"):
        Gallery().search(np.ones((1, 4)))


def test_an_internal_bug_is_not_reported_as_a_damaged_file(tmp_path, monkeypatch):
    g = tiny_gallery()
    g.save(tmp_path / "g.safetensors")
    g.save(tmp_path / "g.safetensors")  # a .bak exists: the message must not send the user to it

    def broken(cls, manifest, arrays):
        raise AttributeError("'NoneType' object has no attribute 'x'")

    monkeypatch.setattr(Gallery, "_from_parts", classmethod(broken))
    with pytest.raises(GalleryError) as info:
        Gallery.load(tmp_path / "g.safetensors")
    msg = str(info.value)
    assert "intact" in msg and "bug" in msg and "AttributeError" in msg
    assert "damaged" not in msg and ".bak" not in msg


def test_calibrations_are_kept_per_method(tmp_path):
    g = tiny_gallery()
    g.calibration = {"coef": [2.0, 4.5], "intercept": -9.0, "threshold": 3.5, "method": "local"}
    g.save(tmp_path / "g.safetensors")
    back = Gallery.load(tmp_path / "g.safetensors")
    assert back.calibration["threshold"] == 0.5  # the fused one of tiny_gallery, untouched
    assert back.calibration_for("local")["threshold"] == 3.5


def test_subset_keeps_only_the_named_individuals_and_leaves_the_gallery_alone():
    g = tiny_gallery(n=4)
    sub = g.subset(["a", "c"])
    assert sub.identities == ["a", "c"] and len(sub) == 3 and len(g) == 4
    keep = np.array([0, 2, 3])
    assert np.array_equal(sub.embeddings, g.embeddings[keep])
    assert sub.metadata["path"].tolist() == g.metadata["path"].iloc[keep].tolist()
    assert [len(f) for f in sub.local] == [len(g.local[i]) for i in keep]
    assert (sub.backbone, sub.weights_sha256, sub.calibration) == (g.backbone, g.weights_sha256, g.calibration)
    sub.remove("a")  # an independent copy
    assert g.identities == ["a", "b", "c"] and len(g) == 4
    with pytest.raises(GalleryError, match="unknown identity 'zz'"):
        g.subset(["a", "zz"])


def test_summary_counts_exemplars_per_identity_and_side():
    g = tiny_gallery(n=4)  # a: left + unknown, b: right, c: left
    s = g.summary()
    assert s.index.tolist() == ["a", "b", "c"]
    assert s.columns.tolist() == ["left", "right", "unknown", "exemplars"]
    assert s.loc["a"].tolist() == [1, 0, 1, 2] and s.loc["b"].tolist() == [0, 1, 0, 1]
    assert s.loc["c"].tolist() == [1, 0, 0, 1] and int(s["exemplars"].sum()) == len(g)
    assert Gallery().summary().empty


def test_notebook_html_shows_the_summary_with_names_escaped():
    g = Gallery.from_embeddings(np.eye(2), ["<b>L-1</b>", "L-2"])
    html = g._repr_html_()
    assert "&lt;b&gt;L-1&lt;/b&gt;" in html and "<b>L-1</b>" not in html
    assert "2 individuals" in html and "exemplars" in html


def test_a_calibration_is_flagged_stale_when_the_exemplars_change() -> None:
    from leopard_reid.calibration import Calibration
    from leopard_reid.matching import Matcher

    rng = np.random.default_rng(0)
    g = Gallery.from_embeddings(rng.normal(size=(6, 8)), ["a", "a", "b", "b", "c", "c"])
    g.calibration = Calibration(coef=(1.0, 2.0), intercept=-3.0, method="fused").to_dict()
    g.calibrations["global"] = Calibration(coef=(4.0,), intercept=-2.0, method="global").to_dict()
    assert not g.calibration_stale
    g.rename("c", "d")  # names only: the scores a calibration was fitted on are unchanged
    assert not g.calibration_stale
    g.add(rng.normal(size=(1, 8)), ["e"])
    assert g.calibration_stale and g.calibration_for("global")["stale"] == "1 exemplar(s) added"
    g.merge("e", "a")
    g.remove("b")
    assert g.calibration["stale"] == "1 exemplar(s) added; e merged into a; b removed"
    with pytest.warns(UserWarning, match="global calibration predates changes to its exemplars"):
        Matcher(method="global").fit(g)
    g.calibrations["global"] = Calibration(coef=(4.0,), intercept=-2.0, method="global").to_dict()  # refitted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Matcher(method="global").fit(g)


def test_checksum_follows_the_content_not_the_file(tmp_path) -> None:
    """The census keys its saved scores by this: a gallery changed in memory after loading is another one."""
    rng = np.random.default_rng(0)
    g = Gallery.from_embeddings(rng.normal(size=(3, 8)), ["a", "b", "a"])
    g.save(tmp_path / "g.lrg")
    loaded = Gallery.load(tmp_path / "g.lrg")
    assert loaded.checksum() == g.checksum() == Gallery.load(tmp_path / "g.lrg").checksum()
    assert len(loaded.checksum()) == 64
    # with keypoints (hashed exemplar by exemplar, never packed) it is the checksum the file records
    from leopard_reid._safetensors import read_checksum

    for gallery in (tiny_gallery(), tiny_gallery(n=2), tiny_gallery(local=False)):
        gallery.save(tmp_path / "k.lrg", overwrite=True)
        assert gallery.checksum() == read_checksum(tmp_path / "k.lrg")
    loaded.add(rng.normal(size=(1, 8)), ["c"])
    assert loaded.checksum() != g.checksum()
    assert Gallery.load(tmp_path / "g.lrg").checksum() == g.checksum()  # the file is unchanged
