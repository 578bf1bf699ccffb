"""``bids_regionx`` entry point: argv -> Settings -> workflow -> exit code.

Failures print one line on stderr (``bids_regionx: error: <file or option>: <problem>``) and
return the BEP027 exit code of the exception; ``-v`` adds the traceback.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Sequence

from bids_regionx.errors import (
    BidsRegionxError,
    CantCreateError,
    DataError,
    NoInputError,
)

logger = logging.getLogger("bids_regionx")


def _isolate_caches(work_dir) -> None:
    """Keep every library cache and config under the work dir, never in $HOME.

    Containers run read-only with an arbitrary UID and an unwritable $HOME; nipype's update check
    would also reach the network.
    """
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    os.environ.setdefault("NO_ET", "1")
    base = os.path.join(str(work_dir), ".cache")
    for var, sub in (("MPLCONFIGDIR", "matplotlib"), ("NIPYPE_CONFIG_DIR", "nipype"),
                     ("XDG_CACHE_HOME", "xdg"), ("JOBLIB_TEMP_FOLDER", "joblib")):
        if var not in os.environ:
            path = os.path.join(base, sub)
            os.makedirs(path, exist_ok=True)
            os.environ[var] = path


def _one_line(message: str) -> str:
    return " ".join(part.strip() for part in str(message).splitlines() if part.strip())


def _report_error(exc: BaseException, verbose: int, cause: BaseException | None = None) -> None:
    """One line on stderr; with ``-v`` the traceback first (of ``cause``, the original error
    that ``exc`` translates, when given)."""
    if verbose:
        shown = cause if cause is not None else exc
        traceback.print_exception(type(shown), shown, shown.__traceback__, file=sys.stderr)
    print(f"bids_regionx: error: {_one_line(exc)}", file=sys.stderr)


def _verbosity(argv: Sequence[str]) -> int:
    """``-v`` count, read before parsing so that parse errors honour it too."""
    count = 0
    for arg in argv:
        if arg == "--verbose":
            count += 1
        elif arg.startswith("-") and not arg.startswith("--") and set(arg[1:]) == {"v"}:
            count += len(arg) - 1
    return count


def _configure_logging(verbosity: int) -> None:
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("bids_regionx").setLevel(max(level, logging.INFO))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the BIDS App; return its exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = _verbosity(argv)
    try:
        from bids_regionx.cli.parser import parse_args
        from bids_regionx.cli.preflight import run_preflight

        settings = parse_args(argv)
        _configure_logging(settings.execution.verbosity)
        for note in (*settings.warnings(), *run_preflight(settings)):
            logger.warning(note)
        _isolate_caches(settings.execution.work_dir)
        if settings.analysis_level == "group":
            from bids_regionx.cli.group import run_group

            return run_group(settings, argv=argv)
        from bids_regionx.cli.participant import run_participant

        return run_participant(settings)
    except BidsRegionxError as exc:
        _report_error(exc, verbose)
        return exc.exit_code
    except KeyboardInterrupt:
        print("bids_regionx: interrupted", file=sys.stderr)
        return 130
    except FileNotFoundError as exc:
        _report_error(NoInputError(str(exc)), verbose, exc)
        return NoInputError.exit_code
    except PermissionError as exc:
        _report_error(CantCreateError(str(exc)), verbose, exc)
        return CantCreateError.exit_code
    except OSError as exc:
        if exc.errno in (28, 122):  # ENOSPC, EDQUOT: the output or work dir ran out of space
            where = exc.filename2 or exc.filename
            message = f"{where}: no space left on device" if where else f"no space left ({exc})"
            _report_error(CantCreateError(message), verbose, exc)
            return CantCreateError.exit_code
        _report_error(exc, verbose)
        return 1
    except (ValueError, TypeError) as exc:
        # Input data the core refused (maps, masks, images): bad input data.
        _report_error(DataError(str(exc)), verbose, exc)
        return DataError.exit_code
    except Exception as exc:  # a bug or an unforeseen failure: still one line without -v
        _report_error(
            RuntimeError(f"unexpected {type(exc).__name__}: {exc} (rerun with -v for details)"),
            verbose,
            exc,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
