"""Scale-out on Dask with a real LocalCluster (worker processes) and the real embedded model.

Every result on the cluster is compared with the same call in this process: enroll (Gallery.build), evaluate and
a census, one of them while a worker is killed mid-run; a broken image is reported by name; the command line runs
against a scheduler and a worker started with the ``dask scheduler`` / ``dask worker`` commands.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ("matches.csv", "capthist.txt", "traps.txt", "errors.csv", "decisions.csv")


@pytest.fixture(scope="module")
def client():
    """Two single-threaded worker processes on this machine."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            distributed.Client(c) as cl:
        files = cl.run(lambda: __import__("leopard_reid").__file__)
        assert set(files.values()) == {str(REPO / "leopard_reid" / "__init__.py")}  # this checkout's code
        yield cl


@pytest.fixture(scope="module")
def season(tmp_path_factory, embedder):
    """A small synthetic census season with one corrupt frame, its gallery, and the one-process census."""
    from leopard_reid import Gallery
    from leopard_reid.census import run_census
    from leopard_reid.demo import write_census_season

    root = tmp_path_factory.mktemp("dask_season")
    f = write_census_season(root, n_individuals=4, sightings_per_individual=4, seed=3)
    known = pd.read_csv(f["known"])
    gallery = Gallery.build(embedder, known, root=root)
    gpath = root / "gallery.lrg"
    gallery.save(gpath)
    sight = pd.read_csv(f["sightings"])
    broken = sight["path"].iloc[3]
    (root / broken).write_bytes(b"not a jpeg")
    kw = {"sightings": f["sightings"], "cameras": f["cameras"], "progress": False}
    res = run_census(f["detections"], gallery=gpath, out=root / "one", embedder=embedder, **kw)
    return {"root": root, "files": f, "known": known, "gallery": gallery, "gpath": gpath, "kw": kw, "res": res,
            "broken": broken}


def _same_outputs(a: Path, b: Path) -> None:
    for name in OUTPUTS:
        assert (a / name).read_text() == (b / name).read_text(), name


def test_enroll_same_as_one_process(client, embedder, season):
    from leopard_reid import Gallery

    one = season["gallery"]
    dist = Gallery.build(embedder, season["known"], root=season["root"], client=client)
    assert list(dist.identities) == list(one.identities) and len(dist) == len(one)
    np.testing.assert_allclose(dist.embeddings, one.embeddings, atol=1e-5)
    for a, b in zip(dist.local, one.local):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.descriptors, b.descriptors)


def test_evaluate_same_as_one_process(client, embedder, population):
    from leopard_reid import evaluate

    root, meta = population
    meta = meta.iloc[:16]
    one = evaluate(meta, root=root, embedder=embedder, method="fused")
    dist = evaluate(meta, root=root, embedder=embedder, method="fused", client=client)
    assert (dist.top1, dist.n_queries, dist.n_failed) == (one.top1, one.n_queries, one.n_failed)
    assert dist.mAP == pytest.approx(one.mAP, abs=1e-9)
    pd.testing.assert_frame_equal(dist.per_query.drop(columns="best_score"), one.per_query.drop(columns="best_score"))
    np.testing.assert_allclose(dist.per_query["best_score"], one.per_query["best_score"], atol=1e-5)


def test_broken_image_named_and_raised(client, embedder, season):
    from leopard_reid import ImageError

    paths = [season["root"] / p for p in pd.read_csv(season["files"]["sightings"])["path"].iloc[:6]]
    with pytest.warns(UserWarning, match="skipped 1 of 6"):
        feats = embedder.describe(paths, local=True, on_error="skip", client=client)
    assert [e.path for e in feats.errors] == [str(season["root"] / season["broken"])]
    assert feats.valid.tolist() == [True, True, True, False, True, True]
    with pytest.raises(ImageError, match=f"{season['broken']}: not an image"):  # on_error="raise", as locally
        embedder.describe(paths, client=client)


class _KillFirstTask(distributed.WorkerPlugin):
    """Ends its worker process (as a crash would) when a census task starts there, once: the marker file is
    removed by the first worker to get there."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "_census_task" in str(key):
            try:
                os.remove(self.marker)
            except FileNotFoundError:
                return
            os._exit(1)


def test_census_same_with_a_worker_killed_mid_run(client, embedder, season, tmp_path):
    from leopard_reid.census import run_census

    marker = tmp_path / "kill-once"
    marker.write_text("")
    before = set(client.scheduler_info()["workers"])
    client.register_plugin(_KillFirstTask(str(marker)), name="kill-first")
    try:  # the gallery object is sent to the workers as a task result; the CLI test covers reading it from its file
        res = run_census(season["files"]["detections"], gallery=season["gallery"], out=tmp_path / "dask",
                         embedder=embedder, client=client, **season["kw"])
    finally:
        client.unregister_worker_plugin("kill-first")
    assert not marker.exists()  # a worker did die during the run...
    client.wait_for_workers(2, timeout=60)
    assert set(client.scheduler_info()["workers"]) != before  # ...and its nanny started a new one
    _same_outputs(tmp_path / "dask", season["root"] / "one")  # complete and identical all the same
    assert res.counts == season["res"].counts
    assert season["broken"] in (tmp_path / "dask" / "errors.csv").read_text()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def scheduler(tmp_path):
    """``dask scheduler`` and one ``dask worker`` from this venv, on 127.0.0.1; stopped afterwards."""
    port = _free_port()
    dask = str(Path(sys.executable).with_name("dask"))  # the venv's `dask` command
    if not Path(dask).exists():
        pytest.skip(f"no `dask` command beside {sys.executable}")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    logs = [tmp_path.joinpath(name).open("w") for name in ("scheduler.log", "worker.log")]
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0", "--no-show"], env=env, stdout=subprocess.DEVNULL,
                              stderr=logs[0])]
    address = f"tcp://127.0.0.1:{port}"
    procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1",
                                   "--nworkers", "1", "--host", "127.0.0.1", "--no-dashboard"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=logs[1]))
    try:
        with distributed.Client(address, timeout=60) as c:
            c.wait_for_workers(1, timeout=60)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs:
            f.close()


def test_cli_census_on_a_dask_scheduler(season, scheduler, tmp_path):
    f = season["files"]
    out = tmp_path / "cli"
    cmd = [sys.executable, "-m", "leopard_reid.cli", "census", "--detections", str(f["detections"]),
           "--gallery", str(season["gpath"]), "--sightings", str(f["sightings"]), "--cameras", str(f["cameras"]),
           "--out", str(out), "--dask", scheduler]
    run = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 3, run.stderr  # finished, one input skipped
    assert season["broken"] in run.stderr
    _same_outputs(out, season["root"] / "one")


def test_cli_bad_addresses(tmp_path, capsys):
    from leopard_reid import cli

    args = ["evaluate", "--metadata", str(tmp_path / "m.csv")]
    assert cli.main([*args, "--dask", "nowhere"]) == 2
    assert "not a Dask address" in capsys.readouterr().err
    assert cli.main([*args, "--dask", "local:0"]) == 2
    (tmp_path / "m.csv").write_text("path,identity\na.jpg,A\n")
    port = _free_port()  # nothing listens there
    import dask

    t = time.perf_counter()
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = cli.main([*args, "--dask", f"tcp://127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 1 and f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}" in err, err
    assert "Traceback" not in err and time.perf_counter() - t < 30


def test_dask_not_imported_without_it():
    code = ("import sys, leopard_reid, leopard_reid.cli as c; c.build_parser(); "
            "import leopard_reid.distributed; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=120, check=True)
    assert run.stdout.strip() == "[]"


def test_match_same_as_one_process(client, embedder, season):
    from leopard_reid import match

    queries = [season["root"] / p for p in pd.read_csv(season["files"]["sightings"])["path"].iloc[:6]]
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        one = match(queries, season["gallery"], embedder=embedder, on_error="skip", chunk_size=4)
    with pytest.warns(UserWarning, match="skipped 1 of 4"):
        dist = match(queries, season["gallery"], embedder=embedder, on_error="skip", chunk_size=4, client=client)
    cols = ["query", "rank", "identity", "exemplar", "decision", "reason"]
    pd.testing.assert_frame_equal(dist[cols], one[cols])
    np.testing.assert_allclose(dist["score"].astype(float), one["score"].astype(float), atol=1e-5)
    assert [e.path for e in dist.attrs["errors"]] == [str(season["root"] / season["broken"])]


def test_cli_enroll_on_local_cluster(season, tmp_path, capsys):
    from leopard_reid import Gallery, cli

    out = tmp_path / "g.lrg"
    code = cli.main(["enroll", "--metadata", str(season["files"]["known"]), "--out", str(out), "--dask", "local:2"])
    assert code == 0, capsys.readouterr().err
    g, one = Gallery.load(out), season["gallery"]
    assert list(g.identities) == list(one.identities)
    np.testing.assert_allclose(g.embeddings, one.embeddings, atol=1e-5)
