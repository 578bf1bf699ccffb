"""The connectivity node skips a measure it cannot compute instead of failing the run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bids_regionx.interfaces.signals import Connectivity


def test_singular_precision_is_skipped_with_reason(tmp_path):
    rng = np.random.default_rng(0)
    series = pd.DataFrame(rng.standard_normal((5, 8)), columns=[f"r{i}" for i in range(8)])
    path = tmp_path / "ts.tsv"
    series.to_csv(path, sep="\t", index=False)
    node = Connectivity(timeseries_file=str(path), measures=["correlation", "precision"],
                        estimator="empirical")
    result = node.run(cwd=str(tmp_path))
    assert result.outputs.stats == "pearsoncorrelation"  # one file: nipype unwraps the list
    (skipped,) = result.outputs.skipped
    assert skipped.startswith("precision: ")
