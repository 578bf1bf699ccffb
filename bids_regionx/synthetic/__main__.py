"""Write a synthetic fMRIPrep dataset: ``python -m bids_regionx.synthetic OUT_DIR [options]``.

Writes ``OUT_DIR/fmriprep`` (or ``OUT_DIR/bids`` + ``bids/derivatives/fmriprep`` with
``--with-raw``), ``OUT_DIR/maps`` (the 4D maps as a BIDS-Atlas dataset) and
``OUT_DIR/ground_truth``, then prints the paths.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from bids_regionx.synthetic.dataset import PRESETS, VARIANTS, make_preset, make_variant


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (pure, for tests)."""
    parser = argparse.ArgumentParser(
        prog="python -m bids_regionx.synthetic",
        description="Write a deterministic fMRIPrep-shaped dataset with planted networks.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out_dir", help="container directory (created)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="size preset")
    parser.add_argument(
        "--variant",
        choices=sorted(VARIANTS),
        default=None,
        help="a variant of the tiny preset (overrides --preset)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--with-raw",
        action="store_true",
        help="write a raw BIDS dataset with derivatives/fmriprep inside it",
    )
    parser.add_argument(
        "--no-ground-truth",
        dest="ground_truth",
        action="store_false",
        help="do not write OUT_DIR/ground_truth",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        if args.variant is not None:
            info = make_variant(
                args.out_dir,
                args.variant,
                seed=args.seed,
                ground_truth=args.ground_truth,
                overwrite=args.overwrite,
            )
        else:
            info = make_preset(
                args.out_dir,
                args.preset,
                seed=args.seed,
                with_raw=args.with_raw,
                ground_truth=args.ground_truth,
                overwrite=args.overwrite,
            )
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 64 if isinstance(exc, ValueError) else 73
    elapsed = time.perf_counter() - start
    print(f"fmriprep:     {info.root}")
    if info.raw_root is not None:
        print(f"raw BIDS:     {info.raw_root}")
    print(f"maps:         {info.maps}")
    print(f"maps labels:  {info.maps_labels}")
    if info.ground_truth_dir is not None:
        print(f"ground truth: {info.ground_truth_dir}")
    print(
        f"{len(info.subjects)} subjects, {len(info.runs)} runs, {info.n_maps} maps, "
        f"{info.planted.n_blobs} blobs, grid {info.shape}, TR {info.t_r} s; "
        f"written in {elapsed:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
