"""Command-line layer: ``argv`` -> :class:`~bids_regionx.config.Settings` -> checks -> workflow.

:func:`build_parser` and :func:`parse_args` (pure, standard library only) and :func:`run_preflight`
(filesystem checks with BEP027 exit codes) import nothing heavy, so ``--help``, ``--version`` and
usage errors answer at once.
"""

from __future__ import annotations

from bids_regionx.cli.parser import build_parser, parse_args
from bids_regionx.cli.preflight import run_preflight

__all__ = ["build_parser", "parse_args", "run_preflight"]
