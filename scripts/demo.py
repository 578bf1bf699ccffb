"""``make demo``: build the example dataset and run bids_regionx on it, end to end.

The dataset is fMRIPrep-shaped (2 subjects x 2 runs, realistic confounds with motion spikes and
non-steady-state volumes) with 4D maps of known networks, generated from a fixed seed; the run
is the participant level (and the group level when it exists) with default options.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, nargs="?", default=Path("demo_output"))
    parser.add_argument("--fresh", action="store_true", help="delete previous demo outputs")
    args = parser.parse_args()
    root = args.out.resolve()
    if args.fresh and root.exists():
        shutil.rmtree(root)
    data = root / "data"
    start = time.perf_counter()
    if not (data / "fmriprep" / "dataset_description.json").exists():
        subprocess.run([sys.executable, "-m", "bids_regionx.synthetic", str(data),
                        "--preset", "demo", "--seed", "0"], check=True)
    maps = sorted((data / "maps").glob("tpl-*/*_probseg.nii.gz"))[0]
    common = ["--maps", str(maps), "-w", str(root / "work")]
    cli = [sys.executable, "-m", "bids_regionx.cli.run"]
    levels = [("participant", ["--combine-runs", "--fisher-z"])]
    if importlib.util.find_spec("bids_regionx.cli.group") is not None:
        levels.append(("group", []))
    for level, extra in levels:
        cmd = [*cli, str(data / "fmriprep"), str(root / "output"), level, *common, *extra]
        print("$ bids_regionx", " ".join(cmd[3:]), flush=True)
        code = subprocess.run(cmd).returncode
        if code != 0:
            print(f"demo: the {level} level exited with {code}", file=sys.stderr)
            return code
    out = root / "output"
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")
    print(f"  dataset : {data / 'fmriprep'}")
    print(f"  outputs : {out}")
    for report in sorted(out.glob("*.html")):
        print(f"  report  : {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
