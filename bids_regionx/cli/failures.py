"""What went wrong in a participant run: one line per problem and the BEP027 exit code.

The workflow keeps going when a node fails (unless ``--stop-on-first-crash``): nipype writes a
crash file per failed node and skips what depends on it. :func:`read_crashes` turns each crash
file back into the original one-line error and says whose it is -- the maps (every run needs
them) or one or more runs -- from the node names :func:`bids_regionx.workflows.base.
init_bids_regionx_wf` gives. :func:`outcome` then decides the exit code (``docs/errors.md``):

- an output or the work dir could not be written (``CantCreateError``, no space left, read-only
  filesystem): 73, whatever else happened;
- the maps could not be turned into regions (unreadable data, nothing left after thresholding
  or splitting): 65, no run could be processed;
- a run failed (broken BOLD, mask, confounds or sidecar; a node crash): 1, after the other runs
  were written;
- every run was dropped for lack of clean data (``--min-time``, censoring): 65;
- else 0 (runs dropped among used ones are listed, not errors).
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bids_regionx.errors import BidsRegionxError, CantCreateError, DataError

__all__ = ["Crash", "Outcome", "dropped_runs", "node_owners", "outcome", "processed_runs",
           "read_crash", "read_crashes", "work_dir_error", "work_dir_lock"]

WORKFLOW_NAME = "bids_regionx_wf"
#: Exception types whose message is already a complete one-line sentence (type not shown).
_PLAIN = {"ValueError", "TypeError", "DataError", "NoInputError", "CantCreateError", "UsageError",
          "BidsRegionxError", "InvalidDatasetError", "NoMatchingRunsError", "DimensionError"}
_EXCEPTION_LINE = re.compile(
    r"^\s*(?P<type>(?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Warning)|"
    r"(?:[A-Za-z_]\w*\.)*(?:error|timeout))(?:: (?P<message>.*\S))?\s*$"
)
#: ``[Errno N]`` of the filesystem errors that mean "cannot create output".
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}


@dataclass(frozen=True)
class Crash:
    """One failed node.

    Attributes
    ----------
    node : str
        Full nipype name (``bids_regionx_wf.<run>_wf.extract_signals``).
    error_type : str
        Class name of the original exception (``DataError``, ``OSError``...).
    message : str
        The original error, one line (prefixed with its type unless it is a plain message).
    kind : {"maps", "runs", "unknown"}
        Whose node it is.
    runs : tuple of str
        Keys of the runs it took down (none for the maps: all of them).
    maps : str or None
        The maps file, for a maps node.
    """

    node: str
    error_type: str
    message: str
    kind: str
    runs: tuple[str, ...] = ()
    maps: str | None = None

    @property
    def cant_create(self) -> bool:
        """An output or work file could not be written (exit code 73)."""
        if self.error_type == "CantCreateError":
            return True
        match = re.search(r"\[Errno (\d+)\]", self.message)
        return match is not None and int(match.group(1)) in _NO_SPACE


def read_crash(path: Path) -> tuple[str, str, str]:
    """``(node, error type, one-line message)`` of a nipype crash file (text format)."""
    text = Path(path).read_text(errors="replace")
    lines = text.splitlines()
    node = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("Node:")), "")
    for line in reversed(lines):
        match = _EXCEPTION_LINE.match(line)
        if match is None or match["type"].endswith("NodeExecutionError"):
            continue
        error_type = match["type"].rsplit(".", 1)[-1]
        message = (match["message"] or "").strip()
        if error_type not in _PLAIN or not message:
            message = f"{error_type}: {message}" if message else error_type
        return node, error_type, message
    body = [ln.strip() for ln in lines if ln.strip()]
    return node, "", body[-1] if body else "unknown error (empty crash file)"


def node_owners(runs, maps_specs, *, combine_runs: bool = False) -> dict[str, tuple]:
    """Node-name prefixes of the participant workflow and whose nodes they are.

    Mirrors the names :func:`~bids_regionx.workflows.base.init_bids_regionx_wf` gives (a test
    builds the workflow and checks that every node has an owner here).

    Returns
    -------
    dict
        node-name prefix (``fnmatch`` pattern) -> ``("maps", maps path)`` or
        ``("runs", (run key, ...))``.
    """
    from bids_regionx.workflows.base import combine_groups, grid_key, node_name

    owners: dict[str, tuple] = {}
    for spec in maps_specs:
        label = node_name(spec.label)
        owners[f"{WORKFLOW_NAME}.regions_{label}_wf."] = ("maps", str(spec.path))
        grids: dict[tuple, list[str]] = {}
        for run in runs:
            grids.setdefault(grid_key(run), []).append(run.key)
            owners[f"{WORKFLOW_NAME}.{node_name(run.key)}_{label}_wf."] = ("runs", (run.key,))
        for i, keys in enumerate(grids.values()):
            owners[f"{WORKFLOW_NAME}.resample_{label}_grid{i}"] = ("runs", tuple(keys))
        if combine_runs:
            for members in combine_groups(runs).values():
                entities = sorted(members[0].entities.items())
                group = node_name("_".join(f"{k}-{v}" for k, v in entities
                                           if k != "run" and v is not None))
                # merge_, combine_, connectivity_, write_... nodes of the group
                keys = tuple(run.key for run in members)
                owners[f"{WORKFLOW_NAME}.*_{group}_{label}"] = ("runs", keys)
    return owners


def _owner(node: str, owners: dict[str, tuple]) -> tuple:
    # The longest matching pattern: run names may start like other run names.
    best = max((p for p in owners if fnmatch.fnmatchcase(node, p + "*")), key=len, default=None)
    return owners[best] if best is not None else ("unknown", None)


def read_crashes(crash_dir: Path, runs, maps_specs, *, combine_runs: bool = False) -> list[Crash]:
    """Every crash file of this invocation, with the original error and its owner."""
    owners = node_owners(runs, maps_specs, combine_runs=combine_runs)
    crashes = []
    for path in sorted(Path(crash_dir).glob("crash-*.txt")):
        node, error_type, message = read_crash(path)
        kind, what = _owner(node, owners)
        crashes.append(Crash(
            node=node,
            error_type=error_type,
            message=message,
            kind=kind,
            runs=tuple(what) if kind == "runs" else (),
            maps=what if kind == "maps" else None,
        ))
    return crashes


def work_dir_error(work_dir: Path, exc: OSError) -> CantCreateError:
    """nipype itself could not write in the work dir (results, crash files)."""
    target = getattr(exc, "filename2", None) or getattr(exc, "filename", None)
    where = f" ({target})" if target else ""
    reason = exc.strerror or str(exc)
    return CantCreateError(f"-w/--work-dir {work_dir}: cannot write in it{where} ({reason})")


@contextlib.contextmanager
def work_dir_lock(work_dir: Path) -> Iterator[None]:
    """Refuse a work dir another bids_regionx process is using (exit code 73).

    nipype's node folders are not safe for concurrent use: two processes sharing a work dir
    (e.g. SLURM array tasks given the same ``-w``) delete each other's files. The lock is an
    ``flock`` the kernel releases when its process dies, so a killed run never blocks a rerun.
    """
    path = Path(work_dir) / ".bids_regionx.lock"
    try:
        import fcntl

        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except (ImportError, OSError):  # no locking here: run unprotected, as before
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CantCreateError(
                f"-w/--work-dir {work_dir}: in use by another bids_regionx process; give each "
                "parallel job its own work dir (e.g. -w <scratch>/work/sub-<label>)"
            ) from None
        except OSError:  # the filesystem has no flock
            pass
        yield
    finally:
        os.close(handle)


def dropped_runs(output_dir: Path, runs) -> list[tuple[str, str]]:
    """``(run key, reason)`` of the runs whose outliers sidecar says ``RunStatus: dropped``."""
    from bids_regionx.io.derivatives import output_path

    dropped = []
    for run in runs:
        path = output_path(output_dir, "outliers", suffix="outliers", extension=".json",
                           **run.source_entities())
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if meta.get("RunStatus") == "dropped":
            dropped.append((run.key, str(meta.get("DropReason") or "dropped")))
    return dropped


def processed_runs(output_dir: Path, runs) -> set[str]:
    """Keys of the runs whose outputs exist (their outliers sidecar is written by every run)."""
    from bids_regionx.io.derivatives import output_path

    return {
        run.key for run in runs
        if output_path(output_dir, "outliers", suffix="outliers", extension=".json",
                       **run.source_entities()).is_file()
    }


@dataclass
class Outcome:
    """Lines to print (stderr), the exit code, and the error behind it (printed by ``main``)."""

    lines: list[str]
    exit_code: int
    error: BidsRegionxError | None = None
    failed: list[tuple[str, str]] | None = None


def outcome(
    settings,
    runs: Sequence,
    problems: Sequence[tuple[str, str]],
    crashes: Sequence[Crash],
    *,
    ran: bool,
) -> Outcome:
    """The exit code of a participant run and the lines that explain it.

    Parameters
    ----------
    settings : Settings
    runs : sequence of RunInputs
        The runs given to the workflow.
    problems : sequence of (run key, message)
        Runs left out before the workflow (broken inputs found by the queries).
    crashes : sequence of Crash
    ran : bool
        Whether the workflow ran (False for ``--reports-only``).
    """
    work_dir = Path(settings.execution.work_dir)
    lines: list[str] = []
    failed = list(problems)
    cant_create: list[str] = []
    bad_maps: list[str] = []
    for crash in crashes:
        message = crash.message
        if crash.cant_create:
            if "[Errno" in message and str(settings.output_dir) not in message \
                    and str(work_dir) not in message:
                message = f"-w/--work-dir {work_dir}: {message} (node {crash.node})"
            cant_create.append(message)
        if crash.kind == "maps":
            if crash.maps and crash.maps not in message:
                message = f"{crash.maps}: {message}"
            failed.append(("maps", message))
            if not crash.cant_create:
                bad_maps.append(message)
        elif crash.kind == "runs":
            failed += [(key, message) for key in crash.runs]
        else:
            failed.append((crash.node, message))
    lines += [f"bids_regionx: run failed: {key}: {message}" for key, message in failed
              if key != "maps"]
    # An output that cannot be written (73) wins over maps that cannot be used (65).
    fatal: BidsRegionxError | None = (
        CantCreateError(cant_create[0]) if cant_create
        else DataError(bad_maps[0]) if bad_maps else None
    )
    if not ran:
        return Outcome(lines, 1 if failed else 0, fatal, failed)
    if any(crash.kind == "maps" for crash in crashes) and fatal is not None:
        return Outcome(lines, fatal.exit_code, fatal, failed)  # no run could be processed
    failed_keys = {key for key, _ in failed}
    if settings.execution.stop_on_first_crash and crashes:
        done = processed_runs(settings.output_dir, runs)
        skipped = [run.key for run in runs if run.key not in done | failed_keys]
        if skipped:
            shown = ", ".join(skipped[:3]) + (", ..." if len(skipped) > 3 else "")
            lines.append(
                f"bids_regionx: stopped at the first failure (--stop-on-first-crash): "
                f"{len(skipped)} other run(s) not processed ({shown})"
            )
    dropped = dropped_runs(settings.output_dir, [r for r in runs if r.key not in failed_keys])
    lines += [f"bids_regionx: run dropped: {key}: {reason}" for key, reason in dropped]
    if fatal is not None:
        return Outcome(lines, fatal.exit_code, fatal, failed)
    if failed:
        return Outcome(lines, 1, None, failed)
    if runs and len(dropped) == len(runs):
        key, reason = dropped[0]
        return Outcome(lines, DataError.exit_code, DataError(
            f"no run has enough clean data: {len(dropped)} of {len(runs)} run(s) dropped "
            f"(e.g. {key}: {reason}); lower --min-time or relax the censoring "
            "(--fd-threshold, --dvars-threshold, --denoise-strategy)"
        ), failed)
    return Outcome(lines, 0, None, failed)
