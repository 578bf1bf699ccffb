"""Inputs and outputs of the BIDS App: pybids queries, maps discovery, derivatives writing.

- :mod:`bids_regionx.io.queries` -- the BOLD runs of an fMRIPrep dataset and the files that go
  with each (brain mask, confounds, sidecars), as :class:`~bids_regionx.io.queries.RunInputs`;
- :mod:`bids_regionx.io.maps` -- the maps images to split into regions, as
  :class:`~bids_regionx.io.maps.MapsSpec`;
- :mod:`bids_regionx.io.derivatives` -- output names, atomic writers, locks and
  ``dataset_description.json``.

Nothing is imported here, so ``import bids_regionx.io`` stays cheap; pybids is imported only
when a layout is built or an output name is formatted.
"""

from __future__ import annotations
