"""Scale-out on Dask: the one module that knows about ``distributed``.

``--dask ADDRESS`` on the command line (or ``client=`` in the Python API) sends the parallel work to a Dask
cluster: describing images (decode, crop, embed, keypoints) in chunks of records, and in a census scoring each
chunk against the gallery. Each worker builds its :class:`~leopard_reid.Embedder` (and a census' fitted
:class:`~leopard_reid.matching.Matcher`) once, in a worker-local cache keyed by backbone, checkpoint and options;
tasks carry only records (paths and boxes) and return features or scores. Clustering, the review page and
every output file stay on the client. Workers read the images and the gallery file at the paths the client
gives them: they must see the same files at the same paths (a shared filesystem, as on an HPC cluster).

Tasks are pure functions of their records, so a task whose worker dies is simply run again by Dask on another
worker, and the gathered result is identical. An unreadable image is returned as an
:class:`~leopard_reid.ImageError`, never raised on the worker, and reported by the caller as in one process.

Without ``client=`` nothing here is used and Dask is never imported.

On paper: a season of 10^6 frames (~1.2 x 10^6 animal detections) on W single-threaded workers.

* Client: reads the MegaDetector JSON and sightings, sorts the detections (a table of ~10^6 rows, a few
  hundred MB), submits ~4,700 census tasks of 256 detections (fewer, smaller chunks when a season is small:
  every worker gets at least 4). Each task carries its records (paths, boxes, sides: ~30 kB pickled) and
  references the gallery by path and checksum; the model and matcher are never shipped.
* Worker, per task: reads 256 frames from the shared filesystem (2-5 MB each: ~1 GB), decodes, crops, embeds,
  extracts keypoints (1,000 RootSIFT per crop) and scores them against the gallery, which it read once (~150 kB
  per exemplar) and fitted once. ~0.25 s of one core per detection for describing plus the keypoint matching:
  a minute or two per task, against ~1 ms of scheduler overhead per task.
* Back to the client, per task: the best score and exemplar per known identity (12 bytes x identities: 150 kB
  for 50 individuals) and, for detections below the new-individual threshold only, their embedding (5 kB) and
  keypoints (~145 kB): ~10 MB per task when a quarter of the detections are unmatched, ~45 GB in all, kept
  on the client until the clustering.
* Stays on the client: bursts, clustering the unmatched detections into new individuals (pairwise P(same)
  among them: quadratic in their number, and the first limit past ~10^5 unmatched detections), flank links,
  the review page and every output file.
* Limits: throughput grows with W until the shared filesystem's read bandwidth (3-5 TB of frames a season:
  1 GB/s reads it in about an hour, so ~100 workers at ~0.3 s per detection saturate it); before that, at
  this scale, the client: memory for the unmatched detections' keypoints (above) and its single-threaded
  clustering of them (pairwise, by burst). Both would need the unmatched detections' features spilled to disk
  and the clustering itself distributed (not done here). ``enroll`` and ``evaluate``
  gather every image's features (~150 kB each) on the client: they are meant for galleries and labelled
  sets (10^3-10^5 images), the census for seasons.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from distributed import Client

    from .census import ChunkScores
    from .embed import Embedder, Features
    from .io import ImageError, Record

__all__ = ["ClusterError", "check_address", "connect", "describe", "chunk_size_for"]

#: Default records per task: big enough that a task's overhead (~ms) is nothing next to its work (seconds).
DEFAULT_CHUNK = 16

_ADDRESS = re.compile(r"^(?:(tcp|tls|ucx|inproc|ws|wss)://)?[\w.\-\[\]:]+:\d{1,5}$")
_LOCAL = re.compile(r"^local:(\d+)$")

# worker-local state: built on first use in each worker process, reused by every later task there
_WORKER_CACHE: dict[tuple[Any, ...], Any] = {}


class ClusterError(OSError):
    """The Dask cluster cannot be reached or started (the reason in one line)."""


# ------------------------------------------------------------------------------------------------ address
def check_address(text: str) -> str:
    """Validate ``--dask ADDRESS`` without connecting: ``local:N``, ``[tcp://]host:port``, or an existing
    scheduler file. Raises :class:`ValueError` with the accepted forms (the CLI's exit 2)."""
    text = text.strip()
    m = _LOCAL.match(text)
    if m:
        if int(m.group(1)) < 1:
            raise ValueError(f"{text!r}: local:N needs N >= 1 workers")
        return text
    if _ADDRESS.match(text):
        return text
    if Path(text).is_file():
        return text
    raise ValueError(f"{text!r} is not a Dask address: give local:N (N worker processes here), "
                     "tcp://HOST:PORT (a running scheduler) or the path of a scheduler file")


def require_distributed() -> None:
    """Raise :class:`ClusterError` (how to install it) when ``distributed`` is missing; imports nothing."""
    from importlib.util import find_spec

    if find_spec("distributed") is None:
        raise ClusterError("Dask is not installed: pip install 'leopard-reid[dask]' (it adds distributed)")


@contextmanager
def connect(address: str, *, timeout: float | None = None) -> Iterator[Client]:
    """A :class:`distributed.Client` for ``address`` (see :func:`check_address`), closed on exit; ``local:N``
    starts a ``LocalCluster`` of N single-threaded worker processes and shuts it down on exit. ``timeout``:
    seconds to reach a scheduler (default: Dask's ``distributed.comm.timeouts.connect``)."""
    check_address(address)
    require_distributed()
    from distributed import Client, LocalCluster

    m = _LOCAL.match(address.strip())
    wait = {"timeout": timeout} if timeout is not None else {}
    cluster = None
    try:
        if m:
            cluster = LocalCluster(n_workers=int(m.group(1)), threads_per_worker=1, processes=True,
                                   dashboard_address=None)
            client = Client(cluster)
        elif _ADDRESS.match(address.strip()):
            client = Client(address.strip(), **wait)
        else:
            client = Client(scheduler_file=address, **wait)
    except (OSError, TimeoutError) as err:
        if cluster is not None:
            cluster.close()
        raise ClusterError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


# ------------------------------------------------------------------------------------------------ workers
def _embedder_spec(embedder: Embedder) -> dict[str, Any]:
    """What a worker needs to build the same embedder: names and options, never the model itself."""
    if not isinstance(embedder.name, str) or getattr(embedder, "_backbone_arg", None) is None:
        raise ValueError("client= needs an Embedder built from a backbone name (workers build the model "
                         "themselves); a ready torch module cannot be shipped to them")
    return {"backbone": embedder._backbone_arg, "checkpoint": embedder.checkpoint,
            "batch_size": embedder._batch_size_arg, "device": embedder._device_arg}


def _tune_worker_malloc() -> None:
    """Undo the cost of Dask's ``MALLOC_TRIM_THRESHOLD_=65536`` (set by every nanny) for this work.

    Setting it switches off glibc's dynamic mmap threshold, so every buffer over 128 kB (each decoded frame,
    each CNN activation) is a fresh mmap and munmap: describing ran ~1.7x slower on a worker than in a plain
    process (measured). Fixed thresholds of 32 MiB (mmap) and 64 MiB (trim) restore the usual speed; memory
    is still handed back to the system above that. Only on glibc, only when the variable is set.
    """
    if _WORKER_CACHE.get(("malloc",)) or "MALLOC_TRIM_THRESHOLD_" not in os.environ:
        return
    _WORKER_CACHE[("malloc",)] = True
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 * 2**20)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to undo
        pass


def _worker_embedder(spec: dict[str, Any]) -> Embedder:
    """This worker's embedder for ``spec``, built once (no DataLoader processes: the worker is the process)."""
    key = ("embedder", tuple(sorted(spec.items())))
    if key not in _WORKER_CACHE:
        from .embed import Embedder

        _tune_worker_malloc()

        _WORKER_CACHE[key] = Embedder(spec["backbone"], checkpoint=spec["checkpoint"], batch_size=spec["batch_size"],
                                      device=spec["device"], num_workers=0, progress=False)
    return _WORKER_CACHE[key]


def _describe_task(spec: dict[str, Any], records: list[Record], local: dict | None) -> Features:
    """Describe one chunk on a worker; unreadable images come back in ``errors``, nothing is raised."""
    emb = _worker_embedder(spec)
    from .io import quiet_warnings

    with quiet_warnings():  # the client reports skipped images once
        return emb.describe(records, local=local if local is not None else False, on_error="skip")


def _absolute(records: Sequence[Record]) -> list[Record]:
    """Records whose file paths are absolute (resolved against this process' folder, as a local run reads
    them): a worker's own working folder must not change which file it reads. Names are kept as given."""
    from dataclasses import replace

    return [replace(r, source=os.path.abspath(r.source)) if isinstance(r.source, (str, os.PathLike)) else r
            for r in records]


def chunk_size_for(n: int, workers: int, *, most: int = DEFAULT_CHUNK) -> int:
    """Records per task: at most ``most``, and small enough that every worker gets a few tasks."""
    return max(1, min(most, -(-n // max(1, 4 * workers))))


def _n_workers(client: Client) -> int:
    return max(1, len(client.scheduler_info(n_workers=-1).get("workers", {})))


def _run_chunks(
    client: Client, fn: Callable[..., Any], chunks: Sequence[Any], *args: Any, desc: str, progress: bool | None,
    sizes: Sequence[int], on_result: Callable[[int, Any], None] | None = None,
) -> list[Any]:
    """Submit ``fn(*args_before, chunk, *args_after)`` per chunk, show a bar on the client, return results in
    chunk order (or hand each to ``on_result(index, result)`` as it completes and keep nothing)."""
    import sys

    from distributed import as_completed
    from tqdm.auto import tqdm

    show = progress if progress is not None else sys.stderr.isatty()
    head, tail = args[0], args[1:]
    from distributed import KilledWorker

    futures = [client.submit(fn, *head, _absolute(chunk), *tail, pure=False) for chunk in chunks]
    index = {f.key: i for i, f in enumerate(futures)}
    out: list[Any] = [None] * len(futures)
    bar = tqdm(total=int(sum(sizes)), desc=desc, unit="img", disable=not show)
    try:
        for fut in as_completed(futures):
            i = index[fut.key]
            try:
                res = fut.result()
            except KilledWorker as err:  # the same chunk took down several workers in turn: not a transient loss
                raise ClusterError(f"Dask gave up on a chunk of {sizes[i]} image(s): the workers running it died "
                                   f"each time (out of memory?): {err}") from None
            if on_result is not None:
                on_result(i, res)
            else:
                out[i] = res
            fut.release()
            bar.update(sizes[i])
    finally:
        bar.close()
        for f in futures:
            f.cancel()
    return out


def describe(
    embedder: Embedder, records: Sequence[Record], *, local: dict | None, client: Client,
    progress: bool | None = None, chunk_size: int | None = None,
) -> Features:
    """:meth:`Embedder.describe` on the cluster: chunks of records described on workers, gathered in input
    order. Every error is collected (the caller raises or warns as in one process)."""
    from .embed import Features

    spec = _embedder_spec(embedder)
    records = list(records)
    n = len(records)
    size = chunk_size or chunk_size_for(n, _n_workers(client))
    chunks = [records[i : i + size] for i in range(0, n, size)]
    parts: list[Features] = _run_chunks(client, _describe_task, chunks, (spec,), local, desc="embedding",
                                        progress=progress, sizes=[len(c) for c in chunks])
    if not parts:
        dim = embedder.dim
        return Features(names=[], embeddings=np.zeros((0, dim), np.float32), local=[] if local is not None else None,
                        valid=np.zeros(0, bool), errors=[], sides=[])
    errors: list[ImageError] = [e for p in parts for e in p.errors]
    return Features(
        names=[nm for p in parts for nm in p.names],
        embeddings=np.concatenate([p.embeddings for p in parts]),
        local=[f for p in parts for f in p.local] if local is not None else None,  # type: ignore[union-attr]
        valid=np.concatenate([p.valid for p in parts]),
        errors=errors,
        sides=[s for p in parts for s in p.sides],
    )


# ------------------------------------------------------------------------------------------------ census
def _worker_matcher(gallery: Any, method: str) -> tuple[Any, Any]:
    """This worker's fitted matcher and identity groups, built once per gallery and method. ``gallery`` is
    ``(path, checksum)`` (read from the shared filesystem; a file that differs from the client's is refused)
    or a gallery sent to the workers."""
    key: tuple[Any, ...] = ("matcher", *gallery, method) if isinstance(gallery, tuple) else ("matcher", id(gallery),
                                                                                            method)
    if key not in _WORKER_CACHE:
        from .gallery import Gallery, GalleryError, IdentityGroups
        from .matching import Matcher

        for k in [k for k in _WORKER_CACHE if k[0] == "matcher"]:
            del _WORKER_CACHE[k]  # one season's gallery at a time
        if isinstance(gallery, tuple):
            g = Gallery.load(gallery[0])
            if g._source is None or g._source[1] != gallery[1]:
                raise GalleryError(f"{gallery[0]}: the file a worker reads differs from the client's (each worker "
                                   "must see the same gallery file at the same path)")
        else:
            g = gallery
        matcher = Matcher(method=method).fit(g)  # type: ignore[arg-type]
        _WORKER_CACHE[key] = (matcher, IdentityGroups(matcher.labels_), g)
    matcher, groups, _ = _WORKER_CACHE[key]
    return matcher, groups


def _same(obj: Any) -> Any:
    return obj


def _census_task(
    spec: dict[str, Any], gallery: Any, method: str, keypoints: dict[str, Any] | None, records: list[Record]
) -> ChunkScores:
    from .census.scoring import score_chunk

    matcher, groups = _worker_matcher(gallery, method)
    return score_chunk(_worker_embedder(spec), matcher, groups, records, keypoints=keypoints)


def census_scores(
    embedder: Embedder, chunks: Sequence[list[Record]], *, gallery: Any, from_file: bool, method: str,
    client: Client, on_result: Callable[[int, ChunkScores], None], keypoints: Mapping[str, Any] | None = None,
) -> None:
    """Score census chunks on the workers; ``on_result(chunk index, scores)`` on the client as each completes.
    ``from_file``: workers read ``gallery`` from the file it was loaded from (checked by checksum), else the
    in-memory gallery is sent once to each worker that needs it. ``keypoints``: extractor options for the
    detections."""
    spec = _embedder_spec(embedder)
    if from_file and gallery._source is not None:
        ref: Any = tuple(gallery._source)
    else:  # a task's result, not scattered data: the scheduler can recompute it if its worker dies
        ref = client.submit(_same, gallery, pure=False)
    task_args = (spec, ref, method, dict(keypoints) if keypoints else None)
    _run_chunks(client, _census_task, chunks, task_args, desc="census", progress=False,
                sizes=[len(c) for c in chunks], on_result=on_result)
