"""The ``leopard-reid`` command line.

Exit codes: 0 success; 1 nothing could be done (bad gallery, no readable image...); 2 usage error; 3 the
command finished but skipped some inputs (listed in ``errors.csv`` beside its output).
Heavy libraries are imported inside the commands, so ``leopard-reid --help`` answers at once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_SKIPPED = 0, 1, 2, 3
METHODS = ("global", "local", "fused")


class CommandError(Exception):
    """A failure to report in one line, exit code 1."""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows every option's default (``--help``)."""


# ---------------------------------------------------------------------- option types (checked at parse time)
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_float(text: str) -> float:
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value:g}")
    return value


def positive_float(text: str) -> float:
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {value:g}")
    return value


def fraction(text: str) -> float:
    value = _float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value:g}")
    return value


def _float(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def file_path(text: str) -> str:
    """A path that is not a folder (a missing file is reported by the command, with its name)."""
    if Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give the file")
    return text


def folder_path(text: str) -> str:
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    return text


def dask_address(text: str) -> str:
    """``--dask``: local:N, tcp://HOST:PORT or a scheduler file, checked without connecting (exit 2 if malformed
    or when Dask is not installed)."""
    from .distributed import ClusterError, check_address, require_distributed

    try:
        address = check_address(text)
        require_distributed()
    except (ValueError, ClusterError) as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return address


def add_dask_arg(p: argparse.ArgumentParser) -> None:
    """The ``--dask ADDRESS`` option (shared by enroll, match, evaluate and census)."""
    p.add_argument("--dask", default=None, type=dask_address, metavar="ADDRESS",
                   help="run the image work on a Dask cluster: local:N (N worker processes here), tcp://HOST:PORT "
                   "or a scheduler file; workers must see the images and gallery at the same paths")


def cluster(args: argparse.Namespace) -> Any:
    """A context giving the ``distributed.Client`` of ``--dask`` (closed afterwards), or None without it."""
    from contextlib import nullcontext

    if not getattr(args, "dask", None):
        return nullcontext(None)
    from .distributed import connect

    return connect(args.dask)


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backbone", default=None, help="timm model name (default: the gallery's, else efficientnet_lite0)")
    p.add_argument("--checkpoint", default=None, help="fine-tuned checkpoint: training folder or .safetensors file")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: CUDA when available)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images embedded at once")


def _add_input_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--metadata", required=required, type=file_path,
                   help="CSV with path[,identity,bbox,side,datetime,camera]")
    p.add_argument("--root", default=None, type=folder_path,
                   help="folder the CSV's paths are relative to (default: the CSV's folder)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leopard-reid",
        description="Identify individual leopards from rosette patterns: enroll known animals, match new photos, "
        "evaluate, run a census.",
        formatter_class=_Formatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"leopard-reid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=text, description=text, formatter_class=_Formatter)

    p = command("enroll", "build (or extend) a gallery of known individuals from a labelled CSV")
    _add_input_args(p, required=True)
    p.add_argument("--out", required=True, type=file_path, help="gallery file to create or extend")
    p.add_argument("--no-local", action="store_true", help="skip keypoint features (global matching only)")
    _add_model_args(p)
    add_dask_arg(p)
    p.set_defaults(func=cmd_enroll)

    p = command("match", "match photos against a gallery")
    p.add_argument("images", nargs="*", help="image files (or use --metadata)")
    _add_input_args(p, required=False)
    p.add_argument("--gallery", required=True, type=file_path, help="gallery file")
    p.add_argument("--method", choices=METHODS, default="fused", help="how photos are compared")
    p.add_argument("--top-k", type=positive_int, default=5, help="candidate identities listed per photo")
    p.add_argument("--new-threshold", type=float, default=None,
                   help="score below which a query is a new individual (default: the gallery's calibration)")
    p.add_argument("--out", default=None, type=file_path, help="write results here (default: print)")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="output format")
    _add_model_args(p)
    add_dask_arg(p)
    p.set_defaults(func=cmd_match)

    p = command("evaluate", "leave-one-out evaluation on a labelled CSV")
    _add_input_args(p, required=True)
    p.add_argument("--method", choices=METHODS, default="fused", help="how photos are compared")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--open-set", choices=("identity", "time"), default=None,
                   help="query/gallery split instead of leave-one-out: are never-seen individuals called new?")
    _add_model_args(p)
    add_dask_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = command("audit", "list photos filed under different identities that match like one animal")
    _add_input_args(p, required=True)
    p.add_argument("--method", choices=METHODS, default="fused", help="how photos are compared")
    p.add_argument("--min-score", type=float, default=None,
                   help="list pairs scoring at least this (default: the 10th percentile of same-identity pair scores)")
    p.add_argument("--limit", type=positive_int, default=50, help="most pairs listed")
    p.add_argument("--out", default=None, type=file_path, help="write the pairs as CSV here (default: print)")
    _add_model_args(p)
    p.set_defaults(func=cmd_audit)

    p = command("calibrate", "fit P(same) and the new-individual threshold on a gallery (stored in it, per method)")
    p.add_argument("--gallery", required=True, type=file_path, help="gallery file")
    p.add_argument("--method", choices=METHODS, default="fused", help="the method whose threshold is fitted")
    p.add_argument("--max-false-match", type=fraction, default=None,
                   help="largest acceptable share of never-seen animals given a known name (default: balanced error)")
    p.set_defaults(func=cmd_calibrate)

    p = command("synth", "generate a synthetic leopard population (images + metadata.csv)")
    p.add_argument("--out", required=True, type=folder_path, help="folder to write")
    p.add_argument("--individuals", type=positive_int, default=40, help="leopards")
    p.add_argument("--sightings", type=positive_int, default=4, help="photos per leopard")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--frames", action="store_true", help="full camera-trap frames with the animal's bbox")
    p.add_argument("--wild", action="store_true", help="wild photos (benchmark set: --individuals 30 --sightings 5)")
    p.add_argument("--season", action="store_true",
                   help="a whole census season: frames, known.csv to enroll, MegaDetector md.json, sightings.csv, "
                   "cameras.csv with paired stations (--sightings 6 or more gives each flank several visits)")
    p.set_defaults(func=cmd_synth)

    p = command("demo", "the main job on the embedded default: synthetic season, enroll, match, report")
    p.add_argument("--out", default="demo_out", type=folder_path, help="folder to write")
    p.add_argument("--individuals", type=positive_int, default=12, help="leopards")
    p.add_argument("--seed", type=int, default=7, help="random seed")
    p.set_defaults(func=cmd_demo)

    _register_census(sub)
    _register_optional(sub)
    return parser


def _register_optional(sub: Any) -> None:
    """Commands of the training module (it adds its own sub-parser)."""
    import importlib
    from importlib.util import find_spec

    for module in ("train",):
        if find_spec(f"leopard_reid.{module}") is None:
            continue
        try:
            mod = importlib.import_module(f"leopard_reid.{module}")
        except Exception as err:  # a broken optional module must not take the other commands down
            print(f"leopard-reid: the {module} command is unavailable ({err})", file=sys.stderr)
            continue
        register = getattr(mod, "register_cli", None)
        if register is not None:
            register(sub)


# ---------------------------------------------------------------------- helpers
def _embedder(args: argparse.Namespace, default: str | None = None, *, gallery: str | None = None) -> Any:
    from .embed import Embedder

    name = args.backbone or default or "efficientnet_lite0"
    if not args.checkpoint:
        check_backbone(name, gallery=gallery)
    return Embedder(name, checkpoint=args.checkpoint, device=args.device, batch_size=args.batch_size,
                    progress=_progress())


def check_backbone(name: str, *, gallery: str | os.PathLike | None = None) -> None:
    """Fail at once, offline, when ``name``'s weights are not on this machine (before any model is loaded)."""
    from .backbones import weights_on_disk

    ok, how = weights_on_disk(name)
    if not ok:
        built = f"{gallery} was built with backbone {name!r}: " if gallery is not None else f"backbone {name!r}: "
        raise CommandError(built + how)


def _progress() -> bool | None:
    """Progress bars on a terminal (None: the library decides), none in pipelines and logs."""
    return None if sys.stderr.isatty() else False


def _read_table(args: argparse.Namespace, *, require: Sequence[str]) -> tuple[Any, Path]:
    from .io import read_metadata

    csv = Path(args.metadata)
    root = Path(args.root) if args.root else csv.resolve().parent
    return read_metadata(csv, require=require), root


def write_errors(errors: Sequence[Any], folder: Path | None, *, command: str = "leopard-reid") -> Path | None:
    """Report skipped inputs: into ``folder/errors.csv`` (see :func:`leopard_reid.io.write_errors`: other
    commands' rows are kept) with one line on standard error, or each on standard error with ``folder=None``.
    Returns where they went, or None when there are none."""
    from .io import write_errors as write

    report_skipped(errors)
    if folder is None:
        return Path("<stderr>") if errors else None
    out = write(errors, folder, command=command)
    if out is not None:
        print(f"skipped {len(errors)} input(s); see {out}", file=sys.stderr)
    return out


def report_skipped(errors: Sequence[Any], limit: int = 20) -> None:
    """One line per skipped input on standard error (the first ``limit``; the rest are in errors.csv)."""
    for e in errors[:limit]:
        print(f"leopard-reid: skipped {e}", file=sys.stderr)
    if len(errors) > limit:
        print(f"leopard-reid: ... and {len(errors) - limit} more skipped input(s)", file=sys.stderr)


# ---------------------------------------------------------------------- commands
def cmd_enroll(args: argparse.Namespace) -> int:
    from .gallery import Gallery

    df, root = _read_table(args, require=("path", "identity"))
    out = Path(args.out)
    existing = Gallery.load(out) if out.exists() else None
    embedder = _embedder(args, existing.backbone if existing else None, gallery=args.out if existing else None)
    if existing is not None:
        existing.check_embedder(embedder)
        dup = _already_enrolled(df, existing)
        if dup.any():
            print(f"{int(dup.sum())} photo(s) (same path and bbox) already in {out}: not added again", file=sys.stderr)
            df = df[~dup].reset_index(drop=True)
    local = not args.no_local if existing is None else existing.local is not None
    with cluster(args) as client:
        feats = embedder.describe(df, root=root, local=local, on_error="skip", client=client)
    gallery = existing or Gallery(backbone=embedder.name, weights_sha256=embedder.weights_sha256)
    before = len(gallery)
    gallery.add_described(feats, df)
    if not len(gallery):
        write_errors(feats.errors, out.resolve().parent, command="enroll")
        raise CommandError("no readable image: nothing enrolled")
    gallery.save(out)
    print(f"{out}: {len(gallery.identities)} individuals, {len(gallery)} exemplars (+{len(gallery) - before})")
    return EXIT_SKIPPED if write_errors(feats.errors, out.resolve().parent, command="enroll") else EXIT_OK


def _already_enrolled(df: Any, gallery: Any) -> Any:
    """Rows of ``df`` whose photo and box are already exemplars (a second animal in one frame is not a duplicate)."""
    import numpy as np

    def key(p: Any, b: Any) -> tuple[str, Any]:
        return os.path.normpath(str(p)), tuple(int(v) for v in b) if b is not None else None

    meta = gallery.metadata
    have = {key(p, b) for p, b in zip(meta["path"], meta["bbox"])}
    boxes = df["bbox"].tolist() if "bbox" in df.columns else [None] * len(df)
    return np.array([key(p, b) in have for p, b in zip(df["path"], boxes)], dtype=bool)


def cmd_match(args: argparse.Namespace) -> int:
    import pandas as pd

    from .gallery import Gallery
    from .matching import match

    if bool(args.images) == bool(args.metadata):
        print("leopard-reid match: give IMAGES or --metadata CSV (not both)", file=sys.stderr)
        return EXIT_USAGE
    gallery = Gallery.load(args.gallery)
    if args.metadata:
        table, root = _read_table(args, require=("path",))
    else:
        table, root = pd.DataFrame({"path": args.images}), None
    embedder = _embedder(args, gallery.backbone, gallery=args.gallery)
    with cluster(args) as client:
        result = match(
            table, gallery, embedder=embedder, method=args.method, top_k=args.top_k,
            new_threshold=args.new_threshold, root=root, on_error="skip", client=client,
        )
    errors = result.attrs.get("errors", [])
    if args.format == "json":
        text = result.to_json(orient="records", indent=1)
    else:
        text = result.to_csv(index=False)
    out_dir = None
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
        out_dir = Path(args.out).resolve().parent
        print(f"{args.out}: {result['query'].nunique() if len(result) else 0} queries matched", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if errors and len(errors) == result["query"].nunique():
        write_errors(errors, out_dir, command="match")
        raise CommandError("no readable query image")
    return EXIT_SKIPPED if write_errors(errors, out_dir, command="match") else EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate

    df, root = _read_table(args, require=("path", "identity"))
    if args.open_set:
        from .evaluation import evaluate_open_set

        with cluster(args) as client:
            res = evaluate_open_set(df, method=args.method, split=args.open_set, embedder=_embedder(args), root=root,
                                    client=client)
        print(json.dumps(res.to_dict()) if args.json else res)
        return EXIT_OK
    with cluster(args) as client:
        result = evaluate(df, method=args.method, embedder=_embedder(args), root=root, client=client)
    if not result.n_queries:
        raise CommandError(
            f"{args.metadata}: nothing to evaluate: no photo has another readable photo of the same individual "
            f"(and flank) to be matched with ({result.n_images} photos, {result.n_identities} individuals, "
            f"{result.n_failed} unreadable)"
        )
    print(json.dumps(result.to_dict()) if args.json else result)
    return EXIT_SKIPPED if result.n_failed else EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    from .evaluation import suspect_duplicates

    df, root = _read_table(args, require=("path", "identity"))
    pairs = suspect_duplicates(df, method=args.method, embedder=_embedder(args), root=root,
                               min_score=args.min_score, limit=args.limit)
    if args.out:
        pairs.to_csv(args.out, index=False)
    else:
        sys.stdout.write(pairs.to_csv(index=False))
    print(f"{len(pairs)} pair(s) filed under different identities score >= {pairs.attrs['min_score']:.3g} "
          "(the 10th percentile of same-identity pair scores unless --min-score): check them by eye", file=sys.stderr)
    return EXIT_SKIPPED if pairs.attrs.get("n_failed") else EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .calibration import calibrate
    from .gallery import Gallery

    gallery = Gallery.load(args.gallery)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same words are printed below, once
        cal = calibrate(gallery, method=args.method, max_false_match=args.max_false_match)
    gallery.calibration = cal.to_dict()  # stored under its method: a local threshold never decides fused P
    gallery.save(args.gallery)
    print(json.dumps(cal.to_dict()))
    print(f"{args.gallery}: {cal.summary()}", file=sys.stderr)
    return EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    from .synthetic import generate

    if args.season:
        from .demo import write_census_season

        f = write_census_season(args.out, n_individuals=args.individuals, sightings_per_individual=args.sightings,
                                seed=args.seed)
        print(f"{args.out}: a census season; try:\n"
              f"  leopard-reid enroll --metadata {f['known']} --out {args.out}/gallery.safetensors\n"
              f"  leopard-reid census --detections {f['detections']} --gallery {args.out}/gallery.safetensors "
              f"--sightings {f['sightings']} --cameras {f['cameras']} --out {args.out}/census\n"
              f"  leopard-reid census apply-review {args.out}/census/decisions.csv "
              f"--gallery {args.out}/gallery.safetensors")
        return EXIT_OK

    df = generate(
        args.out, n_individuals=args.individuals, sightings_per_individual=args.sightings, seed=args.seed,
        frame=args.frames, wild=args.wild,
    )
    print(f"{args.out}: {len(df)} images of {df['identity'].nunique()} individuals; metadata.csv written")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, n_individuals=args.individuals, seed=args.seed)
    return EXIT_OK


# ---------------------------------------------------------------------- census
def _register_census(sub: Any) -> None:
    """Add ``census`` (and ``census apply-review``) to the ``leopard-reid`` sub-parsers (argparse only: the
    census package is imported by the commands, and it raises exceptions that :func:`main` maps to exit codes)."""
    from .census.dates import DATE_ORDERS  # cheap: the census imports its heavy libraries inside functions

    p = sub.add_parser(
        "census",
        help="identify a season's MegaDetector detections; write matches, capture histories and a review page",
        description="Run a census: leopard-reid census --detections MD.json --gallery G --out DIR ... ; "
        "then apply the reviewed decisions: leopard-reid census apply-review DIR/decisions.csv --gallery G",
        formatter_class=_Formatter,
    )
    p.add_argument("--detections", type=file_path,
                   help="MegaDetector output JSON (batch format or the older list layout)")
    p.add_argument("--root", default=None, type=folder_path, help="folder the JSON's relative paths are relative "
                   "to (default: the JSON's folder)")
    p.add_argument("--gallery", type=file_path, help="gallery of known individuals")
    p.add_argument("--sightings", default=None, type=file_path, help="CSV path,camera,datetime[,side] "
                   "(default: EXIF date, parent folder as camera)")
    p.add_argument("--cameras", default=None, type=file_path, help="CSV camera,x,y[,usage][,station] for traps.txt")
    p.add_argument("--out", type=folder_path, help="output folder")
    p.add_argument("--min-conf", type=fraction, default=0.2, help="MegaDetector confidence below which a "
                   "detection is dropped")
    p.add_argument("--occasion-days", type=positive_float, default=1, help="length of a sampling occasion")
    p.add_argument("--burst-seconds", type=non_negative_float, default=60,
                   help="detections of one camera and flank this close in time are one visit")
    p.add_argument("--pair-seconds", type=non_negative_float, default=10,
                   help="simultaneity window for flank links")
    p.add_argument("--linkage", choices=("average", "single", "complete"), default="average",
                   help="how unmatched detections are clustered into provisional new individuals")
    p.add_argument("--season-start", default=None, help="first day of occasion 1 (default: first detection's)")
    p.add_argument("--date-order", choices=DATE_ORDERS, default=None,
                   help="how the sightings' a/b/yyyy dates read: dmy (day first) or mdy (US); required when "
                   "a date is ambiguous")
    p.add_argument("--method", choices=("global", "local", "fused"), default="fused", help="how photos are compared")
    p.add_argument("--new-threshold", type=float, default=None,
                   help="score below which a detection is new (default: the gallery's calibration)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images embedded at once")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: CUDA when available)")
    p.add_argument("--review-images", type=int, default=None,
                   help="rows of review.html with pictures (default: all; the others are still reviewable)")
    p.add_argument("--export", default="secr", help="capture-history formats, comma-separated: secr, oscr, "
                   "camtrapr, camtrapdp, or all (default: %(default)s)")
    p.add_argument("--session", default="1", help="secr/oSCR session name of this season (default: %(default)s)")
    p.add_argument("--append-to", default=None, help="multi-session secr capthist file to add this session to "
                   "(its other sessions are kept)")
    p.add_argument("--camera-operation", default=None, help="camtrapR-style camera-operation CSV (camera, one "
                   "column per day YYYY-MM-DD, 0..1) for the usage; else the cameras table's usage or start/end")
    p.add_argument("--utc-offset", default="+00:00", help="time zone of the camera clocks, for Camtrap DP "
                   "timestamps (default: %(default)s)")
    p.add_argument("--species", default="Panthera pardus", help="scientific name for camtrapR and Camtrap DP "
                   "(default: %(default)s)")
    p.add_argument("--checkpoint", default=None, help="the fine-tuned checkpoint the gallery was built with")
    add_dask_arg(p)
    p.set_defaults(func=cmd_census)
    inner = p.add_subparsers(dest="census_command", metavar="apply-review", required=False)
    a = inner.add_parser("apply-review", help="add the confirmed identities of decisions.csv to the gallery",
                         formatter_class=_Formatter)
    a.add_argument("decisions", type=file_path, help="the edited decisions.csv")
    a.add_argument("--gallery", dest="review_gallery", required=True, type=file_path, help="gallery file")
    a.add_argument("--root", dest="review_root", default=None, type=folder_path,
                   help="folder the detections' paths are relative to (default: the root the census recorded "
                   "in census.json beside the CSV, else the CSV's folder)")
    a.add_argument("--checkpoint", dest="review_checkpoint", default=None,
                   help="the fine-tuned checkpoint the gallery was built with")
    a.set_defaults(func=cmd_apply_review)


def cmd_census(args: argparse.Namespace) -> int:
    from .census import run_census
    from .embed import Embedder
    from .gallery import Gallery

    missing = [f"--{k}" for k in ("detections", "gallery", "out") if not getattr(args, k)]
    if missing:
        print(f"leopard-reid census: missing {', '.join(missing)} (or use: census apply-review DECISIONS "
              "--gallery G)", file=sys.stderr)
        return EXIT_USAGE
    gallery = Gallery.load(args.gallery)
    if not args.checkpoint:
        check_backbone(gallery.backbone or "efficientnet_lite0", gallery=args.gallery)
    embedder = Embedder(gallery.backbone or "efficientnet_lite0", checkpoint=args.checkpoint, device=args.device,
                        batch_size=args.batch_size, progress=False)
    with cluster(args) as client:  # workers read the gallery from its file (the same path on every machine)
        res = run_census(
            args.detections, gallery=args.gallery if client is not None else gallery, root=args.root,
            sightings=args.sightings, cameras=args.cameras, out=args.out, min_conf=args.min_conf,
            occasion_days=args.occasion_days, burst_seconds=args.burst_seconds, embedder=embedder, method=args.method,
            new_threshold=args.new_threshold, pair_seconds=args.pair_seconds, season_start=args.season_start,
            review_images=args.review_images, linkage=args.linkage, exports=args.export, session=args.session,
            append_to=args.append_to, camera_operation=args.camera_operation, utc_offset=args.utc_offset,
            species=args.species, date_order=args.date_order, client=client,
        )
    c = res.counts
    for note in res.notes:
        print(f"leopard-reid census: note: {note}", file=sys.stderr)
    print(f"{args.out}: {c['detections']} detections ({c['known']} known, {c['new']} new, {c['uncertain']} "
          f"uncertain), {c['new_individuals']} provisional new individual(s); open review.html")
    empty = _empty_capthist(res.files["capthist"])
    if empty:
        print(f"leopard-reid census: error: {res.files['capthist']} has no capture: {empty}", file=sys.stderr)
        return EXIT_FAIL
    if res.errors:
        report_skipped(res.errors)
        print(f"skipped {len(res.errors)} input(s); see {res.files['errors']}", file=sys.stderr)
        return EXIT_SKIPPED
    return EXIT_OK


def _empty_capthist(path: Path) -> str:
    """Why a written capture-history file holds no capture line ("" when it has some)."""
    lines = path.read_text().splitlines() if path.exists() else []
    if any(x.strip() and not x.startswith("#") for x in lines):
        return ""
    notes = [x.split("note: ", 1)[1] for x in lines if x.startswith("#") and "note: " in x]
    return "; ".join(notes) or "no detection has a date, a camera and a decided identity"


def cmd_apply_review(args: argparse.Namespace) -> int:
    from .census import apply_review

    embedder = None
    if args.review_checkpoint:
        from .embed import Embedder

        embedder = Embedder(checkpoint=args.review_checkpoint, progress=False)
    s = apply_review(args.decisions, gallery=args.review_gallery, root=args.review_root, embedder=embedder)
    new = ", ".join(s["new_individuals"]) or "none"
    print(f"{args.review_gallery}: +{s['added']} exemplar(s), new individuals: {new}; {s['skipped']} row(s) "
          f"skipped; previous version kept as {args.review_gallery}.bak")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on usage errors and --help: return the code instead
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from .gallery import GalleryError
    from .io import ImageError, MetadataError

    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning  # one plain line per warning, no source lines
            # each skipped file is reported once, by the command (report_skipped), not also as a warning
            warnings.filterwarnings("ignore", message=r"skipped \d+ of \d+ image")
            return int(args.func(args))
    except (CommandError, GalleryError, MetadataError, ImageError, OSError, ValueError) as err:
        print(f"leopard-reid {args.command}: error: {err}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"leopard-reid: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
