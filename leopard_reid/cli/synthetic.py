"""The synthetic-data commands: ``synth`` (a generated population or season) and ``demo`` (the main job on it)."""

from __future__ import annotations

import argparse
from typing import Any

from .common import EXIT_OK, add_command, folder_path, positive_int


def register(sub: Any) -> None:
    """Add synth and demo to the ``leopard-reid`` sub-parsers."""
    def command(name: str, text: str) -> argparse.ArgumentParser:
        return add_command(sub, name, text)

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


def cmd_synth(args: argparse.Namespace) -> int:
    """``synth``: write a synthetic population (crops, frames, wild photos or a census season)."""
    from ..synthetic import generate

    if args.season:
        from ..demo import write_census_season

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
    """``demo``: a synthetic season enrolled, matched and reported with the embedded default model."""
    from ..demo import run_demo

    run_demo(args.out, n_individuals=args.individuals, seed=args.seed)
    return EXIT_OK
