"""The ``leopard-reid`` command line.

Exit codes: 0 success; 1 nothing could be done (bad gallery, no readable image...); 2 usage error; 3 the
command finished but skipped some inputs (listed in ``errors.csv`` beside its output).
Heavy libraries are imported inside the commands, so ``leopard-reid --help`` answers at once.

The package: :mod:`~leopard_reid.cli.common` (exit codes, option types, shared options and helpers), one
module per command group (:mod:`~leopard_reid.cli.gallery`: enroll, match, evaluate, audit, calibrate;
:mod:`~leopard_reid.cli.synthetic`: synth, demo; :mod:`~leopard_reid.cli.census`: census, census apply-review;
:mod:`~leopard_reid.cli.train`: train), and here the parser and :func:`main`, which maps the library's
exceptions to exit codes. ``python -m leopard_reid.cli`` runs :func:`main`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from . import census, gallery, synthetic, train
from .census import cmd_apply_review, cmd_census
from .common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_SKIPPED,
    EXIT_USAGE,
    METHODS,
    CommandError,
    Formatter,
    check_backbone,
    report_skipped,
    write_errors,
)
from .gallery import cmd_audit, cmd_calibrate, cmd_enroll, cmd_evaluate, cmd_match
from .synthetic import cmd_demo, cmd_synth
from .train import cmd_train

__all__ = [
    "EXIT_FAIL", "EXIT_OK", "EXIT_SKIPPED", "EXIT_USAGE", "METHODS", "CommandError", "build_parser", "check_backbone",
    "cmd_apply_review", "cmd_audit", "cmd_calibrate", "cmd_census", "cmd_demo", "cmd_enroll", "cmd_evaluate",
    "cmd_match", "cmd_synth", "cmd_train", "main", "report_skipped", "write_errors",
]


def build_parser() -> argparse.ArgumentParser:
    """The ``leopard-reid`` argument parser with every command (argparse only: nothing heavy is imported)."""
    parser = argparse.ArgumentParser(
        prog="leopard-reid",
        description="Identify individual leopards from rosette patterns: enroll known animals, match new photos, "
        "evaluate, run a census.",
        formatter_class=Formatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"leopard-reid {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    gallery.register(sub)
    synthetic.register(sub)
    census.register(sub)
    train.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``leopard-reid ARGS`` and return its exit code (0 ok, 1 failure, 2 usage, 3 inputs skipped)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on usage errors and --help: return the code instead
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from ..gallery import GalleryError
    from ..io import ImageError, MetadataError

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
    """A warning as one plain line on standard error."""
    print(f"leopard-reid: warning: {message}", file=sys.stderr)
