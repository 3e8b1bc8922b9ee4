"""The census commands: ``census`` (a season's detections against the gallery) and ``census apply-review``.

argparse only at import time: the census package is imported by the commands, and it raises exceptions
that :func:`leopard_reid.cli.main` maps to exit codes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_USAGE,
    Formatter,
    add_dask_arg,
    check_backbone,
    cluster,
    file_path,
    folder_path,
    fraction,
    non_negative_float,
    positive_float,
    positive_int,
    report_skipped,
    tilt,
)


def register(sub: Any) -> None:
    """Add ``census`` (and ``census apply-review``) to the ``leopard-reid`` sub-parsers (argparse only: the
    census package is imported by the commands, and it raises exceptions that :func:`main` maps to exit codes)."""
    from ..census.dates import DATE_ORDERS  # cheap: the census imports its heavy libraries inside functions

    p = sub.add_parser(
        "census",
        help="identify a season's MegaDetector detections; write matches, capture histories and a review page",
        description="Run a census: leopard-reid census --detections MD.json --gallery G --out DIR ... ; "
        "then apply the reviewed decisions: leopard-reid census apply-review DIR/decisions.csv --gallery G",
        formatter_class=Formatter,
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
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images embedded at once (default: 8 on a CPU, 32 on a GPU)")
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
    p.add_argument("--no-resume", dest="resume", action="store_false",
                   help="score every chunk again, ignoring the scores a killed run with the same inputs saved in "
                        "OUT/.census-state")
    p.add_argument("--cluster-candidates", type=positive_int, default=10,
                   help="detections each unmatched detection is verified against when new individuals are "
                        "found (by keypoint vote and by embedding; default: %(default)s)")
    p.add_argument("--max-tilt", type=tilt, default=None, metavar="T",
                   help="keypoints of the detections from affine-tilted views up to tilt T (unset: the "
                        "library's, 2, as the gallery's); 1 is plain SIFT: a census about 2x faster, less accurate "
                        "on obliquely photographed animals")
    add_dask_arg(p)
    p.set_defaults(func=cmd_census)
    inner = p.add_subparsers(dest="census_command", metavar="apply-review", required=False)
    a = inner.add_parser("apply-review", help="add the confirmed identities of decisions.csv to the gallery",
                         formatter_class=Formatter)
    a.add_argument("decisions", type=file_path, help="the edited decisions.csv")
    a.add_argument("--gallery", dest="review_gallery", required=True, type=file_path, help="gallery file")
    a.add_argument("--root", dest="review_root", default=None, type=folder_path,
                   help="folder the detections' paths are relative to (default: the root the census recorded "
                   "in census.json beside the CSV, else the CSV's folder)")
    a.add_argument("--checkpoint", dest="review_checkpoint", default=None,
                   help="the fine-tuned checkpoint the gallery was built with")
    a.set_defaults(func=cmd_apply_review)


def cmd_census(args: argparse.Namespace) -> int:
    """``census``: identify a season's detections; write matches, capture histories, review page."""
    from ..census import run_census
    from ..embed import Embedder
    from ..gallery import Gallery

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
            species=args.species, date_order=args.date_order, client=client, resume=args.resume,
            cluster_candidates=args.cluster_candidates,
            keypoints=None if args.max_tilt is None else {"max_tilt": args.max_tilt},
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
    """``census apply-review``: the reviewed decisions into the gallery (previous version kept)."""
    from ..census import apply_review

    embedder = None
    if args.review_checkpoint:
        from ..embed import Embedder

        embedder = Embedder(checkpoint=args.review_checkpoint, progress=False)
    s = apply_review(args.decisions, gallery=args.review_gallery, root=args.review_root, embedder=embedder)
    new = ", ".join(s["new_individuals"]) or "none"
    print(f"{args.review_gallery}: +{s['added']} exemplar(s), new individuals: {new}; {s['skipped']} row(s) "
          f"skipped; previous version kept as {args.review_gallery}.bak")
    return EXIT_OK
