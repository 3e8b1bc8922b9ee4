"""What the ``leopard-reid`` commands share: exit codes, option types checked at parse time, common
options, the embedder of ``--backbone``/``--checkpoint``, and reporting skipped inputs.

Only argparse and the standard library at import time, so ``leopard-reid --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_SKIPPED = 0, 1, 2, 3
METHODS = ("global", "local", "fused")


class CommandError(Exception):
    """A failure to report in one line, exit code 1."""


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows every option's default (``--help``); a help text that states its own default (one that
    depends on the machine, say) keeps it."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "(default:" in action.help:
            return action.help
        return super()._get_help_string(action)


def add_command(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    """A sub-command whose help and description are ``text`` and whose ``--help`` shows every default."""
    return sub.add_parser(name, help=text, description=text, formatter_class=Formatter)


def positive_int(text: str) -> int:
    """Option type: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _bounded(text: str, ok: Callable[[float], bool], rule: str) -> float:
    """A finite float for which ``ok`` holds, or the argparse error ``must be <rule>, not <value>``."""
    value = _float(text)
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {rule}, not {value:g}")
    return value


def non_negative_float(text: str) -> float:
    """Option type: a finite number >= 0."""
    return _bounded(text, lambda v: v >= 0, ">= 0")


def positive_float(text: str) -> float:
    """Option type: a finite number > 0."""
    return _bounded(text, lambda v: v > 0, "> 0")


def tilt(text: str) -> float:
    """Option type: an affine tilt, a finite number >= 1 (1: the photo as taken)."""
    return _bounded(text, lambda v: v >= 1, "at least 1 (1: no tilted views)")


def fraction(text: str) -> float:
    """Option type: a finite number in [0, 1]."""
    return _bounded(text, lambda v: 0.0 <= v <= 1.0, "between 0 and 1")


def _float(text: str) -> float:
    """A finite float, or the argparse error that names the text."""
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
    """A path that is not a file (a folder that need not exist yet)."""
    if Path(text).exists() and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder")
    return text


def dask_address(text: str) -> str:
    """``--dask``: local:N, tcp://HOST:PORT or a scheduler file, checked without connecting (exit 2 if malformed
    or when Dask is not installed)."""
    from ..distributed import ClusterError, check_address, require_distributed

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
    from ..distributed import connect

    return connect(args.dask)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """``--backbone``, ``--checkpoint``, ``--device``, ``--batch-size``: the embedder's options."""
    p.add_argument("--backbone", default=None, help="timm model name (default: the gallery's, else efficientnet_lite0)")
    p.add_argument("--checkpoint", default=None, help="fine-tuned checkpoint: training folder or .safetensors file")
    p.add_argument("--device", default=None, help="cpu, cuda... (default: CUDA when available)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images embedded at once (default: 8 on a CPU, 32 on a GPU)")


def add_input_args(p: argparse.ArgumentParser, *, required: bool) -> None:
    """``--metadata`` and ``--root``: the labelled CSV and the folder its paths are relative to."""
    p.add_argument("--metadata", required=required, type=file_path,
                   help="CSV with path[,identity,bbox,side,datetime,camera]")
    p.add_argument("--root", default=None, type=folder_path,
                   help="folder the CSV's paths are relative to (default: the CSV's folder)")


def make_embedder(args: argparse.Namespace, default: str | None = None, *, gallery: str | None = None) -> Any:
    """The Embedder of ``--backbone``/``--checkpoint`` (its weights checked first, offline)."""
    from ..embed import Embedder

    name = args.backbone or default or "efficientnet_lite0"
    if not args.checkpoint:
        check_backbone(name, gallery=gallery)
    return Embedder(name, checkpoint=args.checkpoint, device=args.device, batch_size=args.batch_size,
                    progress=progress_bars())


def check_backbone(name: str, *, gallery: str | os.PathLike | None = None) -> None:
    """Fail at once, offline, when ``name``'s weights are not on this machine (before any model is loaded)."""
    from ..backbones import weights_on_disk

    ok, how = weights_on_disk(name)
    if not ok:
        built = f"{gallery} was built with backbone {name!r}: " if gallery is not None else f"backbone {name!r}: "
        raise CommandError(built + how)


def progress_bars() -> bool | None:
    """Progress bars on a terminal (None: the library decides), none in pipelines and logs."""
    return None if sys.stderr.isatty() else False


def read_table(args: argparse.Namespace, *, require: Sequence[str]) -> tuple[Any, Path]:
    """``--metadata`` read and checked (``require``d columns), and its root folder."""
    from ..io import read_metadata

    csv = Path(args.metadata)
    root = Path(args.root) if args.root else csv.resolve().parent
    return read_metadata(csv, require=require), root


def write_errors(errors: Sequence[Any], folder: Path | None, *, command: str = "leopard-reid") -> Path | None:
    """Report skipped inputs: into ``folder/errors.csv`` (see :func:`leopard_reid.io.write_errors`: other
    commands' rows are kept) with one line on standard error, or each on standard error with ``folder=None``.
    Returns where they went, or None when there are none."""
    from ..io import write_errors as write

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
