"""bids_regionx: regions, denoised region time series and connectomes from 4D maps.

The Python API is :class:`bids_regionx.RegionExtractor`, a scikit-learn style estimator with
nilearn's ``RegionExtractor`` interface. Importing the package stays light: nipype and pybids
are only imported by the BIDS App layers (``cli``, ``workflows``, ``interfaces``, ``io``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("bids_regionx")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["RegionExtractor", "__version__"]


def __getattr__(name):
    # Lazy so that ``import bids_regionx`` does not import scikit-learn and scipy up front.
    if name == "RegionExtractor":
        from bids_regionx.estimator import RegionExtractor

        return RegionExtractor
    raise AttributeError(f"module 'bids_regionx' has no attribute {name!r}")
