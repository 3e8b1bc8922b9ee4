"""The gallery commands: ``enroll`` known animals, ``match`` photos, ``evaluate``, ``audit``, ``calibrate``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from .common import (
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_USAGE,
    METHODS,
    CommandError,
    add_command,
    add_dask_arg,
    add_input_args,
    add_model_args,
    cluster,
    file_path,
    fraction,
    make_embedder,
    positive_int,
    read_table,
    write_errors,
)


def register(sub: Any) -> None:
    """Add enroll, match, evaluate, audit and calibrate to the ``leopard-reid`` sub-parsers."""
    def command(name: str, text: str) -> argparse.ArgumentParser:
        return add_command(sub, name, text)

    p = command("enroll", "build (or extend) a gallery of known individuals from a labelled CSV")
    add_input_args(p, required=True)
    p.add_argument("--out", required=True, type=file_path, help="gallery file to create or extend")
    p.add_argument("--no-local", action="store_true", help="skip keypoint features (global matching only)")
    add_model_args(p)
    add_dask_arg(p)
    p.set_defaults(func=cmd_enroll)

    p = command("match", "match photos against a gallery")
    p.add_argument("images", nargs="*", help="image files (or use --metadata)")
    add_input_args(p, required=False)
    p.add_argument("--gallery", required=True, type=file_path, help="gallery file")
    p.add_argument("--method", choices=METHODS, default="fused", help="how photos are compared")
    p.add_argument("--top-k", type=positive_int, default=5, help="candidate identities listed per photo")
    p.add_argument("--new-threshold", type=float, default=None,
                   help="score below which a query is a new individual (default: the gallery's calibration)")
    p.add_argument("--out", default=None, type=file_path, help="write results here (default: print)")
    p.add_argument("--format", choices=("csv", "json"), default="csv", help="output format")
    add_model_args(p)
    add_dask_arg(p)
    p.set_defaults(func=cmd_match)

    p = command("evaluate", "leave-one-out evaluation on a labelled CSV")
    add_input_args(p, required=True)
    p.add_argument("--method", choices=METHODS, default="fused", help="how photos are compared")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--open-set", choices=("identity", "time"), default=None,
                   help="query/gallery split instead of leave-one-out: are never-seen individuals called new?")
    add_model_args(p)
    add_dask_arg(p)
    p.set_defaults(func=cmd_evaluate)

    p = command("audit", "list photos filed under different identities that match like one animal")
    add_input_args(p, required=True)
    p.add_argument("--method", choices=METHODS, default="fused", help="how photos are compared")
    p.add_argument("--min-score", type=float, default=None,
                   help="list pairs scoring at least this (default: the 10th percentile of same-identity pair scores)")
    p.add_argument("--limit", type=positive_int, default=50, help="most pairs listed")
    p.add_argument("--out", default=None, type=file_path, help="write the pairs as CSV here (default: print)")
    add_model_args(p)
    p.set_defaults(func=cmd_audit)

    p = command("calibrate", "fit P(same) and the new-individual threshold on a gallery (stored in it, per method)")
    p.add_argument("--gallery", required=True, type=file_path, help="gallery file")
    p.add_argument("--method", choices=METHODS, default="fused", help="the method whose threshold is fitted")
    p.add_argument("--max-false-match", type=fraction, default=None,
                   help="largest acceptable share of never-seen animals given a known name (default: balanced error)")
    p.set_defaults(func=cmd_calibrate)


def cmd_enroll(args: argparse.Namespace) -> int:
    """``enroll``: build or extend a gallery from a labelled CSV (rows already enrolled are skipped)."""
    from ..gallery import Gallery

    df, root = read_table(args, require=("path", "identity"))
    out = Path(args.out)
    existing = Gallery.load(out) if out.exists() else None
    embedder = make_embedder(args, existing.backbone if existing else None, gallery=args.out if existing else None)
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
    """``match``: rank gallery identities for each photo; rank-1 rows say match or new."""
    import pandas as pd

    from ..gallery import Gallery
    from ..matching import match

    if bool(args.images) == bool(args.metadata):
        print("leopard-reid match: give IMAGES or --metadata CSV (not both)", file=sys.stderr)
        return EXIT_USAGE
    gallery = Gallery.load(args.gallery)
    if args.metadata:
        table, root = read_table(args, require=("path",))
    else:
        table, root = pd.DataFrame({"path": args.images}), None
    embedder = make_embedder(args, gallery.backbone, gallery=args.gallery)
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
    """``evaluate``: leave-one-out (or open-set) accuracy on a labelled CSV."""
    from ..evaluation import evaluate

    df, root = read_table(args, require=("path", "identity"))
    if args.open_set:
        from ..evaluation import evaluate_open_set

        with cluster(args) as client:
            res = evaluate_open_set(df, method=args.method, split=args.open_set, embedder=make_embedder(args),
                                    root=root, client=client)
        print(json.dumps(res.to_dict()) if args.json else res)
        return EXIT_OK
    with cluster(args) as client:
        result = evaluate(df, method=args.method, embedder=make_embedder(args), root=root, client=client)
    if not result.n_queries:
        raise CommandError(
            f"{args.metadata}: nothing to evaluate: no photo has another readable photo of the same individual "
            f"(and flank) to be matched with ({result.n_images} photos, {result.n_identities} individuals, "
            f"{result.n_failed} unreadable)"
        )
    print(json.dumps(result.to_dict()) if args.json else result)
    return EXIT_SKIPPED if result.n_failed else EXIT_OK


def cmd_audit(args: argparse.Namespace) -> int:
    """``audit``: photo pairs filed under different names that match like one animal."""
    from ..evaluation import suspect_duplicates

    df, root = read_table(args, require=("path", "identity"))
    pairs = suspect_duplicates(df, method=args.method, embedder=make_embedder(args), root=root,
                               min_score=args.min_score, limit=args.limit)
    if args.out:
        pairs.to_csv(args.out, index=False)
    else:
        sys.stdout.write(pairs.to_csv(index=False))
    print(f"{len(pairs)} pair(s) filed under different identities score >= {pairs.attrs['min_score']:.3g} "
          "(the 10th percentile of same-identity pair scores unless --min-score): check them by eye", file=sys.stderr)
    return EXIT_SKIPPED if pairs.attrs.get("n_failed") else EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    """``calibrate``: fit P(same) and the new-individual threshold, stored in the gallery."""
    from ..calibration import calibrate
    from ..gallery import Gallery

    gallery = Gallery.load(args.gallery)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the same words are printed below, once
        cal = calibrate(gallery, method=args.method, max_false_match=args.max_false_match)
    gallery.calibration = cal.to_dict()  # stored under its method: a local threshold never decides fused P
    gallery.save(args.gallery)
    print(json.dumps(cal.to_dict()))
    print(f"{args.gallery}: {cal.summary()}", file=sys.stderr)
    return EXIT_OK
