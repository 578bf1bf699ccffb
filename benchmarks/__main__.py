"""Speed and memory of bids_regionx against nilearn, on the same data, in one run.

Usage::

    python -m benchmarks [--quick] [--only fit|transform] [--data-dir DIR]

Every measurement runs in a fresh Python process (so peak RSS is that task's own), reads the
same files, and prints wall time and peak resident memory. nilearn is timed with BLAS pinned
to one thread and with the machine's default thread count; ratios are taken against its faster
configuration. bids_regionx runs with one BLAS thread (how the BIDS App runs it, and the
configuration in which its regions are bit-identical to nilearn's with one thread).

Data (generated once, deterministic, cached in ``--data-dir``): 30 ICA-like float32 maps on the
2 mm MNI grid (91 x 109 x 91) and float32 BOLD runs of 300 and 600 volumes on the same grid,
uncompressed and gzipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_DATA = Path(os.environ.get("BIDS_REGIONX_BENCH_DATA", "/tmp/bids_regionx_bench"))

# Each task is a small script run in a child process; it prints one JSON line.
_PRELUDE = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import nibabel as nib, numpy as np
def peak_mb():
    # VmHWM is this process's own peak (ru_maxrss is inherited across fork + exec on Linux).
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
def report(**kw):
    kw["peak_rss_mb"] = round(peak_mb(), 1)
    print("RESULT " + json.dumps(kw))
"""

_TASKS = {
    "fit": """
maps = nib.load(sys.argv[1]); np.asanyarray(maps.dataobj)  # loading is not timed
if sys.argv[3] == "nilearn":
    from nilearn.regions import RegionExtractor
else:
    from bids_regionx import RegionExtractor
est = RegionExtractor(maps, extractor=sys.argv[2])
t0 = time.perf_counter(); est.fit(); dt = time.perf_counter() - t0
report(seconds=dt, n_regions=int(est.regions_img_.shape[3]), index=list(map(int, est.index_)))
""",
    "transform": """
maps = nib.load(sys.argv[1])
if sys.argv[3] == "nilearn":
    from nilearn.regions import RegionExtractor
else:
    from bids_regionx import RegionExtractor
est = RegionExtractor(maps, extractor="connected_components").fit()
bold = nib.load(sys.argv[2])
t0 = time.perf_counter(); sig = est.transform(bold); dt = time.perf_counter() - t0
report(seconds=dt, shape=list(sig.shape), checksum=float(np.abs(sig).sum()))
""",
    "read": """
bold = nib.load(sys.argv[1])
t0 = time.perf_counter(); data = np.array(bold.dataobj); dt = time.perf_counter() - t0
report(seconds=dt, shape=list(data.shape))
""",
}


def _run(task: str, args: list[str], *, threads: int | None) -> dict:
    env = dict(os.environ)
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
        if threads is not None:
            env[var] = str(threads)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    code = textwrap.dedent(_PRELUDE) + textwrap.dedent(_TASKS[task])
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise RuntimeError(f"benchmark task {task} {args} failed:\n{proc.stderr[-3000:]}")


def make_data(data_dir: Path, *, quick: bool) -> dict[str, Path]:
    """Write (once) the maps and BOLD files the benchmark reads."""
    import nibabel as nib

    from bids_regionx.synthetic.maps import MNI_2MM_AFFINE, ellipsoid_mask, ica_like_maps

    data_dir.mkdir(parents=True, exist_ok=True)
    lengths = (100,) if quick else (300, 600)
    paths = {"maps": data_dir / "maps30.nii"}
    for n in lengths:
        paths[f"bold{n}"] = data_dir / f"bold{n}.nii"
        paths[f"bold{n}.gz"] = data_dir / f"bold{n}.nii.gz"
    if not paths["maps"].exists():
        nib.save(nib.Nifti1Image(ica_like_maps(), MNI_2MM_AFFINE), paths["maps"])
    brain = ellipsoid_mask((91, 109, 91))
    rng = np.random.default_rng(0)
    for n in lengths:
        if paths[f"bold{n}"].exists() and paths[f"bold{n}.gz"].exists():
            continue
        # Baseline ~1000 in the brain, 1 % fluctuations, slow drift, background ~0.
        data = np.zeros((91, 109, 91, n), dtype=np.float32, order="F")
        drift = np.linspace(0, 5, n, dtype=np.float32)
        for t in range(n):
            vol = np.where(brain, 1000.0, 0.0).astype(np.float32)
            vol += brain * (10 * rng.standard_normal(brain.shape)).astype(np.float32)
            data[..., t] = vol + brain * drift[t]
        img = nib.Nifti1Image(data, MNI_2MM_AFFINE)
        nib.save(img, paths[f"bold{n}"])
        nib.save(img, paths[f"bold{n}.gz"])
        del data, img
    return paths


def _best(task: str, args: list[str], *, threads: int | None, repeat: int) -> dict:
    """Fastest of ``repeat`` runs (page-cache and allocator noise hit short tasks most)."""
    runs = [_run(task, args, threads=threads) for _ in range(max(repeat, 1))]
    return min(runs, key=lambda r: r["seconds"])


def _fmt_ratio(ours: float, theirs: float) -> str:
    return f"{theirs / ours:6.1f}x" if ours > 0 else "   n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="100-volume BOLD only (smoke run)")
    parser.add_argument("--only", choices=("fit", "transform"), help="run one group")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("--repeat", type=int, default=2,
                        help="runs of each bids_regionx task and file read; the fastest counts")
    args = parser.parse_args(argv)
    paths = make_data(args.data_dir, quick=args.quick)
    results: dict[str, dict] = {}
    rows = []

    def best_nilearn(task, task_args):
        one = _run(task, [*task_args, "nilearn"], threads=1)
        default = _run(task, [*task_args, "nilearn"], threads=None)
        return one if one["seconds"] <= default["seconds"] else default, one, default

    if args.only in (None, "fit"):
        for extractor in ("connected_components", "local_regions"):
            task_args = [str(paths["maps"]), extractor]
            theirs, one, default = best_nilearn("fit", task_args)
            ours = _best("fit", [*task_args, "ours"], threads=1, repeat=args.repeat)
            same = ours["index"] == one["index"]
            results[f"fit/{extractor}"] = {
                "nilearn_1thread": one, "nilearn_default": default, "ours": ours,
                "same_regions_as_nilearn_1thread": same,
            }
            rows.append((f"fit {extractor}", theirs, ours,
                         f"{ours['n_regions']} regions, index_ equal: {same}"))
    if args.only in (None, "transform"):
        lengths = sorted(int(k[4:-3]) for k in paths if k.startswith("bold") and k.endswith(".gz"))
        for n in lengths:
            for suffix in ("", ".gz"):
                bold = str(paths[f"bold{n}{suffix}"])
                read = _best("read", [bold], threads=1, repeat=args.repeat)
                task_args = [str(paths["maps"]), bold]
                ours = _best("transform", [*task_args, "ours"], threads=1, repeat=args.repeat)
                if n == lengths[0]:
                    theirs, one, default = best_nilearn("transform", task_args)
                    results[f"transform/{n}{suffix}"] = {
                        "nilearn_1thread": one, "nilearn_default": default, "ours": ours,
                        "read": read,
                    }
                    rows.append((f"transform {n} vol{suffix or ' .nii'}", theirs, ours,
                                 f"read once: {read['seconds']:.1f} s "
                                 f"(ours = {ours['seconds'] / read['seconds']:.2f}x read)"))
                else:
                    results[f"transform/{n}{suffix}"] = {"ours": ours, "read": read}
                    rows.append((f"transform {n} vol{suffix or ' .nii'} (ours only)", None, ours,
                                 f"read once: {read['seconds']:.1f} s "
                                 f"(ours = {ours['seconds'] / read['seconds']:.2f}x read)"))

    print(f"\n{'task':34s} {'nilearn s':>10s} {'ours s':>8s} {'speed':>7s} "
          f"{'nilearn MB':>11s} {'ours MB':>8s} {'RSS':>7s}  notes")
    for name, theirs, ours, note in rows:
        if theirs is None:
            print(f"{name:34s} {'':>10s} {ours['seconds']:8.2f} {'':>7s} {'':>11s} "
                  f"{ours['peak_rss_mb']:8.0f} {'':>7s}  {note}")
            continue
        print(f"{name:34s} {theirs['seconds']:10.2f} {ours['seconds']:8.2f} "
              f"{_fmt_ratio(ours['seconds'], theirs['seconds'])} "
              f"{theirs['peak_rss_mb']:11.0f} {ours['peak_rss_mb']:8.0f} "
              f"{_fmt_ratio(ours['peak_rss_mb'], theirs['peak_rss_mb'])}  {note}")
    print("\nspeed and RSS columns: nilearn / bids_regionx (higher is better for bids_regionx); "
          "nilearn figures are its faster BLAS configuration (1 thread or default).")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
