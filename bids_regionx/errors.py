"""Exceptions that carry a BEP027 exit code.

The CLI prints ``str(exc)`` as one line on stderr and exits with ``exc.exit_code``. Library code
raises the subclass that says what went wrong; the message names the file or option and the
problem (e.g. ``"sub-01_..._desc-confounds_timeseries.tsv: column 'csf' is missing"``).
"""

from __future__ import annotations

import os


class BidsRegionxError(Exception):
    """Base class: a failure the user can act on. Exit code 1 (a run failed)."""

    exit_code: int = 1


class UsageError(BidsRegionxError):
    """Bad command-line usage or option value (EX_USAGE)."""

    exit_code = getattr(os, "EX_USAGE", 64)


class InvalidDatasetError(BidsRegionxError):
    """The input is not a valid BIDS (derivatives) dataset."""

    exit_code = 16


class UnknownAnalysisLevelError(BidsRegionxError):
    """The analysis level is not one of those the app supports."""

    exit_code = 17


class NoMatchingRunsError(BidsRegionxError):
    """The selection and filters matched no BOLD run."""

    exit_code = 18


class DataError(BidsRegionxError):
    """Input data are malformed or inconsistent (EX_DATAERR)."""

    exit_code = getattr(os, "EX_DATAERR", 65)


class NoInputError(BidsRegionxError):
    """An input file or folder is missing or unreadable (EX_NOINPUT)."""

    exit_code = getattr(os, "EX_NOINPUT", 66)


class CantCreateError(BidsRegionxError):
    """An output cannot be created (EX_CANTCREAT)."""

    exit_code = getattr(os, "EX_CANTCREAT", 73)
