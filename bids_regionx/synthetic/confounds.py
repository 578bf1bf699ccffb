"""fMRIPrep-shaped confound tables computed from a synthetic BOLD run.

The columns are *measured* on the generated data the way fMRIPrep measures them, so that they are
consistent with the image a test reads back:

* motion: the six rigid-body parameters (``trans_*`` in mm, ``rot_*`` in rad) are the planted
  head motion (:func:`simulate_motion`), as fMRIPrep copies them from head-motion correction;
* ``framewise_displacement``: Power et al. (2012), 50 mm head radius (nipype
  ``FramewiseDisplacement(parameter_source="SPM")``); ``rmsd``: Jenkinson's RMS deviation of a
  sphere of 80 mm radius between consecutive volumes (FSL ``rmsdiff``);
* ``dvars`` / ``std_dvars``: nipype ``compute_dvars`` (intensity normalisation to a median of
  1000, robust standard deviation, AR(1) expected variance);
* ``global_signal``, ``csf``, ``white_matter``, ``csf_wm``, ``tcompcor``: mean in their masks;
* CompCor (a/c/w/t and the crown ``edge_comp``): nipype's algorithm -- steady-state volumes only,
  cosine high-pass (128 s), voxel variance normalisation, SVD, components padded with zeros over
  the non-steady-state volumes, 50 % cumulative variance retained;
* ``cosineXX`` (DCT basis of the steady-state volumes, padded with zeros) and
  ``non_steady_state_outlierXX`` one-hot columns, exactly as nipype's CompCor pre-filter file;
* ``*_derivative1``, ``*_power2``, ``*_derivative1_power2`` expansions (fMRIPrep's
  ``(dd1(rps + wm + csf + gsr))^^2``) and ``motion_outlierXX`` spike columns (FD > 0.5 mm or
  std DVARS > 1.5).

Column names follow what fMRIPrep actually writes: indicator and cosine columns have no
underscore before the two-digit index (``cosine00``, ``non_steady_state_outlier00``,
``motion_outlier00``) although fMRIPrep's documentation spells them ``cosine_XX``; CompCor
columns do (``a_comp_cor_00``). The first row of derivative, FD, RMSD and DVARS columns is
``n/a``.

Three *flavours* reproduce the layouts consumers meet in the wild (see :func:`flavour_for`):
``"modern"`` (fMRIPrep >= 21: ``c_``/``w_``/``a_comp_cor`` split by mask, ``edge_comp_XX``, only
retained components in the JSON), ``"20.2"`` (one ``a_comp_cor_XX`` family over the three masks
told apart by ``Mask`` in the JSON, ``dropped_N`` entries) and ``"1.4"`` (as ``"20.2"`` without
``rmsd``, ``csf_wm``, ``tcompcor``; written as ``desc-confounds_regressors``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: The six rigid-body parameters, in fMRIPrep's order: mm, mm, mm, rad, rad, rad.
MOTION_COLUMNS = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")

#: Head radius (mm) of Power's framewise displacement, as in nipype and fMRIPrep.
FD_RADIUS_MM = 50.0
#: Sphere radius (mm) of FSL's ``rmsdiff`` used by fMRIPrep's ``rmsd`` column.
RMSD_RADIUS_MM = 80.0
#: fMRIPrep's spike thresholds (``--fd-spike-threshold``, ``--dvars-spike-threshold``).
FD_SPIKE_THRESHOLD = 0.5
DVARS_SPIKE_THRESHOLD = 1.5
#: Period (s) of the high-pass DCT basis used before CompCor.
COSINE_PERIOD_S = 128.0

FLAVOURS = ("modern", "20.2", "1.4")

_MOTION_METADATA = {
    "trans_x": {"Description": "Translation along left-right axis.", "Units": "mm"},
    "trans_y": {"Description": "Translation along anterior-posterior axis.", "Units": "mm"},
    "trans_z": {"Description": "Translation along superior-inferior axis.", "Units": "mm"},
    "rot_x": {
        "Description": 'Rotation about left-right axis. Also known as "pitch".',
        "Units": "rad",
    },
    "rot_y": {
        "Description": 'Rotation about anterior-posterior axis. Also known as "roll".',
        "Units": "rad",
    },
    "rot_z": {
        "Description": 'Rotation about superior-inferior axis. Also known as "yaw".',
        "Units": "rad",
    },
    "framewise_displacement": {"Units": "mm"},
}


def flavour_for(version: str) -> str:
    """Return the confounds layout written by an fMRIPrep ``version``.

    Parameters
    ----------
    version : str
        fMRIPrep version, e.g. ``"23.2.1"``, ``"20.2.7"``, ``"1.4.1"``.

    Returns
    -------
    str
        ``"1.4"`` before 20.2, ``"20.2"`` for 20.2.x, ``"modern"`` from 21.0 on.
    """
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError as exc:
        raise ValueError(
            f"fmriprep_version: cannot parse {version!r} as MAJOR.MINOR[.PATCH]"
        ) from exc
    if (major, minor) < (20, 2):
        return "1.4"
    if major == 20:
        return "20.2"
    return "modern"


# --------------------------------------------------------------------------------------------
# Head motion
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Motion:
    """Planted head motion of one run.

    Attributes
    ----------
    params : ndarray, shape (n_volumes, 6)
        ``trans_x, trans_y, trans_z`` (mm), ``rot_x, rot_y, rot_z`` (rad).
    spikes : tuple of int
        Volumes at which a sudden movement starts.
    transient : tuple of bool
        For each spike, True if the head returns at the next volume (FD peaks at ``t`` and
        ``t + 1``), False for a step to a new position (FD peaks at ``t`` only).
    """

    params: np.ndarray
    spikes: tuple[int, ...] = ()
    transient: tuple[bool, ...] = ()


def _smooth_walk(rng: np.random.Generator, n: int, k: int, width: float) -> np.ndarray:
    """Random walk low-passed by a Gaussian of ``width`` volumes, zero at the first volume."""
    from scipy import ndimage

    walk = np.cumsum(rng.standard_normal((n, k)), axis=0)
    walk = ndimage.gaussian_filter1d(walk, width, axis=0, mode="nearest")
    walk -= walk[0]
    scale = walk.std(axis=0)
    scale[scale == 0] = 1.0
    return walk / scale


def simulate_motion(
    n_volumes: int,
    *,
    rng: np.random.Generator,
    scale: float = 1.0,
    n_spikes: int = 0,
    first_spike: int = 2,
    spike_fd_mm: tuple[float, float] = (0.9, 2.0),
) -> Motion:
    """Simulate head-motion parameters: slow drift + respiration-like jitter + sudden spikes.

    Parameters
    ----------
    n_volumes : int
        Number of volumes.
    rng : numpy.random.Generator
        Seeded generator.
    scale : float
        Multiplies the drift and jitter (a "high-motion" subject has ``scale=2``).
    n_spikes : int
        Number of sudden movements; they alternate transient (head returns) and step.
    first_spike : int
        Earliest volume a spike may start at (keep spikes out of the non-steady-state volumes).
    spike_fd_mm : tuple of 2 float
        Range of the framewise displacement (mm) of one spike; above fMRIPrep's 0.5 mm.

    Returns
    -------
    Motion
        Parameters of shape (n_volumes, 6), translations in mm and rotations in rad.
    """
    if n_volumes < 2:
        raise ValueError(f"n_volumes: need at least 2 volumes, got {n_volumes}")
    # Drift amplitudes: ~0.15 mm and ~0.002 rad (0.1 mm at 50 mm), like a compliant subject.
    drift_sd = np.array([0.15, 0.2, 0.25, 0.002, 0.0015, 0.0015]) * scale
    # Jitter sets the baseline FD: ~0.08 mm at scale 1 (a compliant adult).
    jitter_sd = np.array([0.005, 0.008, 0.01, 0.0001, 0.0001, 0.0001]) * scale
    params = _smooth_walk(rng, n_volumes, 6, width=10.0) * drift_sd
    params += rng.standard_normal((n_volumes, 6)) * jitter_sd
    params -= params[0]  # fMRIPrep's parameters are relative to the reference volume (~start)

    spikes = _pick_spikes(rng, n_volumes, n_spikes, first=first_spike)
    transient = tuple(i % 2 == 0 for i in range(len(spikes)))
    for t, back in zip(spikes, transient, strict=True):
        # Direction in mm-equivalent units (rotations x 50 mm), scaled to the target FD.
        direction = rng.standard_normal(6)
        direction /= np.abs(direction).sum()
        jump = direction * rng.uniform(*spike_fd_mm)
        jump[3:] /= FD_RADIUS_MM
        if back:
            params[t] += jump
        else:
            params[t:] += jump
    return Motion(params=params, spikes=spikes, transient=transient)


def _pick_spikes(rng: np.random.Generator, n: int, k: int, *, first: int) -> tuple[int, ...]:
    """Choose ``k`` spike onsets in ``[first, n - 4]``, at least 4 volumes apart, sorted."""
    chosen: list[int] = []
    candidates = np.arange(first, n - 3)
    for _ in range(k):
        free = [c for c in candidates if all(abs(int(c) - s) >= 4 for s in chosen)]
        if not free:
            break
        chosen.append(int(rng.choice(free)))
    return tuple(sorted(chosen))


def framewise_displacement(params: np.ndarray, *, radius: float = FD_RADIUS_MM) -> np.ndarray:
    """Power's framewise displacement.

    Parameters
    ----------
    params : ndarray, shape (n_volumes, 6)
        Translations (mm) then rotations (rad).
    radius : float
        Head radius (mm) turning rotations into arc lengths.

    Returns
    -------
    ndarray, shape (n_volumes,)
        FD in mm; NaN at the first volume, as fMRIPrep writes ``n/a``.
    """
    diff = np.abs(np.diff(params, axis=0))
    fd = diff[:, :3].sum(axis=1) + radius * diff[:, 3:].sum(axis=1)
    return np.concatenate([[np.nan], fd])


def _rotation_matrices(rot: np.ndarray) -> np.ndarray:
    """Rotation matrices (n, 3, 3) from x, y, z Euler angles (rad), R = Rz @ Ry @ Rx."""
    cx, cy, cz = np.cos(rot).T
    sx, sy, sz = np.sin(rot).T
    n = len(rot)
    rx = np.zeros((n, 3, 3))
    ry = np.zeros((n, 3, 3))
    rz = np.zeros((n, 3, 3))
    rx[:, 0, 0] = 1
    rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = cx, -sx, sx, cx
    ry[:, 1, 1] = 1
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 2, 0], ry[:, 2, 2] = cy, sy, -sy, cy
    rz[:, 2, 2] = 1
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1] = cz, -sz, sz, cz
    return rz @ ry @ rx


def rms_displacement(params: np.ndarray, *, radius: float = RMSD_RADIUS_MM) -> np.ndarray:
    """Jenkinson's RMS deviation between consecutive rigid transforms (FSL ``rmsdiff``).

    For ``M = T_t T_{t-1}^{-1} - I = [A | b]`` the mean squared displacement over a sphere of
    radius ``R`` centred on the origin is ``R^2 / 5 * trace(A^T A) + b^T b``.

    Parameters
    ----------
    params : ndarray, shape (n_volumes, 6)
        Translations (mm) then rotations (rad).
    radius : float
        Sphere radius in mm.

    Returns
    -------
    ndarray, shape (n_volumes,)
        RMS displacement in mm; NaN at the first volume.
    """
    rot = _rotation_matrices(params[:, 3:])
    trans = params[:, :3]
    # Relative transform from volume t-1 to t: R = R_t R_{t-1}^T, b = t_t - R t_{t-1}.
    rel_r = rot[1:] @ np.transpose(rot[:-1], (0, 2, 1))
    rel_b = trans[1:] - np.einsum("nij,nj->ni", rel_r, trans[:-1])
    a = rel_r - np.eye(3)
    ms = radius**2 / 5.0 * np.einsum("nij,nij->n", a, a) + np.einsum("ni,ni->n", rel_b, rel_b)
    return np.concatenate([[np.nan], np.sqrt(ms)])


# --------------------------------------------------------------------------------------------
# Image-derived confounds
# --------------------------------------------------------------------------------------------
def compute_dvars(data: np.ndarray, *, intensity_normalization: float = 1000.0):
    """DVARS and standardised DVARS, following nipype's ``compute_dvars``.

    Parameters
    ----------
    data : ndarray, shape (n_voxels, n_volumes)
        Time series of the voxels of the brain mask.
    intensity_normalization : float
        The data are scaled so that their median is this value (nipype's default 1000).

    Returns
    -------
    dvars : ndarray, shape (n_volumes,)
        RMS over voxels of the temporal difference (after scaling); NaN at the first volume.
    std_dvars : ndarray, shape (n_volumes,)
        ``dvars`` divided by its expected value under an AR(1) model of each voxel; NaN first.
    """
    func = np.asarray(data, dtype=np.float64)
    if intensity_normalization:
        func = func / np.median(func) * intensity_normalization
    q75, q25 = np.percentile(func, [75, 25], axis=1, method="lower")
    func_sd = (q75 - q25) / 1.349
    keep = func_sd > 0  # nipype's remove_zerovariance=True, as fMRIPrep sets it
    func, func_sd = func[keep], func_sd[keep]
    centred = func - func.mean(axis=1, keepdims=True)
    # Yule-Walker AR(1) coefficient per voxel (biased autocovariances, as nipype's _AR_est_YW).
    r0 = np.einsum("vt,vt->v", centred, centred)
    r1 = np.einsum("vt,vt->v", centred[:, 1:], centred[:, :-1])
    ar1 = np.divide(r1, r0, out=np.zeros_like(r0), where=r0 > 0)
    diff_sd_mean = (np.sqrt(2.0 * (1.0 - ar1)) * func_sd).mean()
    dvars = np.sqrt(np.mean(np.diff(func, axis=1) ** 2, axis=0))
    std = dvars / diff_sd_mean
    return np.concatenate([[np.nan], dvars]), np.concatenate([[np.nan], std])


def cosine_basis(
    n_volumes: int, *, t_r: float, n_dummy: int = 0, period_cut: float = COSINE_PERIOD_S
) -> np.ndarray:
    """fMRIPrep's ``cosineXX`` columns: a DCT high-pass basis of the steady-state volumes.

    nipype's CompCor builds ``order = floor(2 * n * t_r / period_cut)`` regressors (nistats'
    ``_cosine_drift``: ``sqrt(2 / n) * cos(pi * k * (t + 0.5) / n)`` for ``k = 1 .. order - 1``
    plus a constant) over the ``n = n_volumes - n_dummy`` steady-state volumes and saves all but
    the constant, padded with zeros over the non-steady-state volumes.

    Parameters
    ----------
    n_volumes : int
        Number of volumes of the run.
    t_r : float
        Repetition time in s.
    n_dummy : int
        Number of leading non-steady-state volumes.
    period_cut : float
        Longest period (s) the basis removes.

    Returns
    -------
    ndarray, shape (n_volumes, n_cosines)
        ``n_cosines = max(order - 1, 0)``.
    """
    n = n_volumes - n_dummy
    order = int(np.floor(2.0 * n * t_r / period_cut))
    k = np.arange(1, max(order, 1))
    t = np.arange(n)
    basis = np.sqrt(2.0 / n) * np.cos(np.pi / n * (t[:, None] + 0.5) * k[None, :])
    out = np.zeros((n_volumes, len(k)))
    out[n_dummy:] = basis
    return out


@dataclass(frozen=True)
class CompCor:
    """Result of one CompCor decomposition.

    Attributes
    ----------
    components : ndarray, shape (n_volumes, n_retained)
        Retained temporal components, zero over the non-steady-state volumes.
    singular_values, variance_explained : ndarray, shape (n_all,)
        Of every component, retained or not.
    """

    components: np.ndarray
    singular_values: np.ndarray
    variance_explained: np.ndarray

    @property
    def n_retained(self) -> int:
        return self.components.shape[1]


def compcor(
    data: np.ndarray,
    *,
    t_r: float,
    n_dummy: int = 0,
    variance_threshold: float | None = 0.5,
    n_components: int | None = None,
) -> CompCor:
    """Principal components of high-pass-filtered, variance-normalised voxel time series.

    Parameters
    ----------
    data : ndarray, shape (n_voxels, n_volumes)
        Time series of the voxels of one CompCor mask.
    t_r : float
        Repetition time in s (for the 128 s cosine high-pass).
    n_dummy : int
        Leading non-steady-state volumes, ignored and padded with zeros (fMRIPrep's
        ``ignore_initial_volumes``).
    variance_threshold : float or None
        Keep the fewest components whose cumulative explained variance reaches it.
    n_components : int, optional
        Keep exactly this many (capped by the rank) instead.

    Returns
    -------
    CompCor
    """
    x = np.asarray(data, dtype=np.float64)[:, n_dummy:].T  # (time, voxel)
    n_steady = x.shape[0]
    x = x[:, x.std(axis=0) > 0]
    design = np.column_stack([cosine_basis(n_steady, t_r=t_r), np.ones(n_steady)])
    if x.shape[1] == 0:
        empty = np.zeros((n_dummy + n_steady, 0))
        return CompCor(empty, np.zeros(0), np.zeros(0))
    beta, *_ = np.linalg.lstsq(design, x, rcond=None)
    resid = x - design @ beta
    sd = resid.std(axis=0)
    sd[sd == 0] = 1.0
    u, s, _ = np.linalg.svd(resid / sd, full_matrices=False)
    # Deterministic signs (LAPACK's are arbitrary): largest |loading| of each component positive.
    signs = np.sign(u[np.argmax(np.abs(u), axis=0), np.arange(u.shape[1])])
    u *= np.where(signs == 0, 1.0, signs)
    var = s**2 / np.sum(s**2)
    if n_components is not None:
        keep = min(int(n_components), len(s))
    else:
        keep = min(int(np.searchsorted(np.cumsum(var), variance_threshold) + 1), len(s))
    comps = np.zeros((n_dummy + n_steady, keep))
    comps[n_dummy:] = u[:, :keep]
    return CompCor(comps, s, var)


def _compcor_metadata(cc: CompCor, method: str, mask: str | None, *, retained_only: bool):
    """JSON entries of one CompCor decomposition: (retained list, dropped list) of dicts."""
    cum = np.cumsum(cc.variance_explained)
    entries = []
    n_total = len(cc.singular_values) if not retained_only else cc.n_retained
    for i in range(n_total):
        entry = {
            "CumulativeVarianceExplained": round(float(cum[i]), 10),
            "Method": method,
            "Retained": i < cc.n_retained,
            "SingularValue": round(float(cc.singular_values[i]), 10),
            "VarianceExplained": round(float(cc.variance_explained[i]), 10),
        }
        if mask is not None:
            entry["Mask"] = mask
        entries.append(entry)
    return entries[: cc.n_retained], entries[cc.n_retained :]


def derivative1(x: np.ndarray) -> np.ndarray:
    """Backward difference with NaN at the first volume (fMRIPrep's ``_derivative1``)."""
    return np.concatenate([[np.nan], np.diff(x)])


def expand(name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """fMRIPrep's expansion of one column: itself, derivative, and their squares.

    Returns
    -------
    dict
        ``name``, ``name_derivative1``, ``name_derivative1_power2``, ``name_power2`` in the
        order fMRIPrep writes them; the derivative columns start with NaN.
    """
    d1 = derivative1(x)
    return {
        name: x,
        f"{name}_derivative1": d1,
        f"{name}_derivative1_power2": d1**2,
        f"{name}_power2": x**2,
    }


def spike_regressors(
    fd: np.ndarray,
    std_dvars: np.ndarray,
    *,
    fd_threshold: float = FD_SPIKE_THRESHOLD,
    dvars_threshold: float = DVARS_SPIKE_THRESHOLD,
    prefix: str = "motion_outlier",
) -> dict[str, np.ndarray]:
    """One-hot ``motion_outlierXX`` columns for volumes over either threshold (NaN never is).

    Parameters
    ----------
    fd, std_dvars : ndarray, shape (n_volumes,)
        Framewise displacement (mm) and standardised DVARS.

    Returns
    -------
    dict of str to ndarray, each shape (n_volumes,)
    """
    with np.errstate(invalid="ignore"):
        flagged = np.flatnonzero((fd > fd_threshold) | (std_dvars > dvars_threshold))
    out = {}
    for i, t in enumerate(flagged):
        col = np.zeros(len(fd))
        col[t] = 1.0
        out[f"{prefix}{i:02d}"] = col
    return out


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConfoundMasks:
    """Boolean masks (on the BOLD grid) fMRIPrep measures confounds in.

    Attributes
    ----------
    brain : ndarray of bool, shape (x, y, z)
        The run's BOLD brain mask (DVARS, global signal, tCompCor search region).
    csf, wm : ndarray of bool, shape (x, y, z)
        CompCor masks (inside ``brain``); ``combined`` is their union.
    crown : ndarray of bool, shape (x, y, z)
        A shell outside the brain mask (``edge_comp_XX``).
    """

    brain: np.ndarray
    csf: np.ndarray
    wm: np.ndarray
    crown: np.ndarray

    @property
    def combined(self) -> np.ndarray:
        return self.csf | self.wm


@dataclass
class ConfoundsTable:
    """An fMRIPrep confounds table and its JSON sidecar.

    Attributes
    ----------
    columns : dict of str to ndarray, each shape (n_volumes,)
        In fMRIPrep's column order; NaN is written ``n/a``.
    metadata : dict
        The ``desc-confounds_timeseries.json`` content.
    """

    columns: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)

    def to_tsv(self) -> str:
        """Tab-separated text, floats as Python's shortest repr (pandas' default), NaN ``n/a``."""
        names = list(self.columns)
        data = np.column_stack([self.columns[n] for n in names])
        lines = ["\t".join(names)]
        for row in data.tolist():
            lines.append("\t".join("n/a" if v != v else repr(v) for v in row))
        return "\n".join(lines) + "\n"


def _top_variance_mask(data: np.ndarray, n_dummy: int, fraction: float = 0.02) -> np.ndarray:
    """Indices of the ``fraction`` highest-variance voxels after removing a quadratic trend."""
    x = np.asarray(data[:, n_dummy:], dtype=np.float64)
    t = np.linspace(-1.0, 1.0, x.shape[1])
    design = np.column_stack([np.ones_like(t), t, t**2])
    beta, *_ = np.linalg.lstsq(design, x.T, rcond=None)
    var = (x.T - design @ beta).var(axis=0)
    n_keep = min(len(var), max(5, int(round(fraction * len(var)))))
    # Stable sort so that ties never depend on the platform.
    return np.sort(np.argsort(-var, kind="stable")[:n_keep])


def fmriprep_confounds(
    bold: np.ndarray,
    masks: ConfoundMasks,
    motion: np.ndarray,
    *,
    t_r: float,
    n_dummy: int,
    flavour: str = "modern",
    n_edge_components: int = 24,
) -> ConfoundsTable:
    """Compute an fMRIPrep confounds table from a BOLD run.

    Parameters
    ----------
    bold : ndarray, shape (x, y, z, n_volumes)
        The BOLD run as written to disk.
    masks : ConfoundMasks
        Masks to measure in.
    motion : ndarray, shape (n_volumes, 6)
        Head-motion parameters (mm, rad).
    t_r : float
        Repetition time in s.
    n_dummy : int
        Number of leading non-steady-state volumes.
    flavour : {"modern", "20.2", "1.4"}
        Layout to reproduce (see the module docstring).
    n_edge_components : int
        Number of crown (``edge_comp_XX``) components (fMRIPrep: 24); modern flavour only.

    Returns
    -------
    ConfoundsTable
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour: expected one of {FLAVOURS}, got {flavour!r}")
    n_vol = bold.shape[-1]
    if motion.shape != (n_vol, 6):
        raise ValueError(f"motion: expected shape ({n_vol}, 6), got {motion.shape}")
    if not 0 <= n_dummy < n_vol - 2:
        raise ValueError(f"n_dummy: must be in [0, {n_vol - 3}], got {n_dummy}")

    def ts(mask: np.ndarray) -> np.ndarray:
        return np.asarray(bold[mask], dtype=np.float64)  # (n_voxels, n_volumes)

    brain_ts = ts(masks.brain)
    tcc_idx = _top_variance_mask(brain_ts, n_dummy)
    signals = {
        "global_signal": brain_ts.mean(axis=0),
        "csf": ts(masks.csf).mean(axis=0),
        "white_matter": ts(masks.wm).mean(axis=0),
    }
    if flavour != "1.4":
        signals["csf_wm"] = ts(masks.combined).mean(axis=0)
        signals["tcompcor"] = brain_ts[tcc_idx].mean(axis=0)

    dvars, std_dvars = compute_dvars(brain_ts)
    fd = framewise_displacement(motion)

    cols: dict[str, np.ndarray] = {}
    meta: dict = {}
    for name, values in signals.items():
        if name in ("global_signal", "csf", "white_matter"):
            cols.update(expand(name, values))
        else:
            cols[name] = values
        meta[name] = {"Method": "Mean"}
    cols["std_dvars"] = std_dvars
    cols["dvars"] = dvars
    cols["framewise_displacement"] = fd
    if flavour != "1.4":
        cols["rmsd"] = rms_displacement(motion)

    legacy = flavour != "modern"
    tcc = compcor(brain_ts[tcc_idx], t_r=t_r, n_dummy=n_dummy)
    for i in range(tcc.n_retained):
        cols[f"t_comp_cor_{i:02d}"] = tcc.components[:, i]
    kept, _ = _compcor_metadata(tcc, "tCompCor", None, retained_only=True)
    meta.update({f"t_comp_cor_{i:02d}": e for i, e in enumerate(kept)})

    # nipype runs one ACompCor node over the masks in this order; the legacy layouts number all
    # retained components in one a_comp_cor_XX sequence and keep the dropped ones as dropped_N.
    mask_order = ("combined", "CSF", "WM") if legacy else ("CSF", "WM", "combined")
    mask_arrays = {"CSF": masks.csf, "WM": masks.wm, "combined": masks.combined}
    prefix = {"CSF": "c_comp_cor", "WM": "w_comp_cor", "combined": "a_comp_cor"}
    n_pooled = 0
    dropped: list[dict] = []
    for mask_name in mask_order:
        cc = compcor(ts(mask_arrays[mask_name]), t_r=t_r, n_dummy=n_dummy)
        kept, lost = _compcor_metadata(cc, "aCompCor", mask_name, retained_only=not legacy)
        for i in range(cc.n_retained):
            if legacy:
                name = f"a_comp_cor_{n_pooled:02d}"
                n_pooled += 1
            else:
                name = f"{prefix[mask_name]}_{i:02d}"
            cols[name] = cc.components[:, i]
            meta[name] = kept[i]
        dropped.extend(lost)
    meta.update({f"dropped_{i}": e for i, e in enumerate(dropped)})

    if flavour == "modern" and n_edge_components > 0:
        edge = compcor(ts(masks.crown), t_r=t_r, n_dummy=n_dummy, n_components=n_edge_components)
        kept, _ = _compcor_metadata(edge, "EdgeRegressor", "Edge", retained_only=True)
        for i in range(edge.n_retained):
            cols[f"edge_comp_{i:02d}"] = edge.components[:, i]
            meta[f"edge_comp_{i:02d}"] = kept[i]

    cos = cosine_basis(n_vol, t_r=t_r, n_dummy=n_dummy)
    for i in range(cos.shape[1]):
        cols[f"cosine{i:02d}"] = cos[:, i]
    for i in range(n_dummy):
        col = np.zeros(n_vol)
        col[i] = 1.0
        cols[f"non_steady_state_outlier{i:02d}"] = col

    for i, name in enumerate(MOTION_COLUMNS):
        cols.update(expand(name, np.asarray(motion[:, i], dtype=np.float64)))
    if flavour == "modern":
        meta.update({k: dict(v) for k, v in _MOTION_METADATA.items()})

    cols.update(spike_regressors(fd, std_dvars))
    return ConfoundsTable(columns=cols, metadata=dict(sorted(meta.items())))


def column_families(columns: Sequence[str] | Mapping[str, object]) -> dict[str, list[str]]:
    """Group confound column names by family (for tests and reports).

    Returns
    -------
    dict
        Keys ``motion``, ``motion_expansion``, ``tissue``, ``fd_dvars``, ``cosine``,
        ``non_steady_state``, ``motion_outlier``, ``compcor``, ``edge``, ``other``.
    """
    fam: dict[str, list[str]] = {
        k: []
        for k in (
            "motion",
            "motion_expansion",
            "tissue",
            "fd_dvars",
            "cosine",
            "non_steady_state",
            "motion_outlier",
            "compcor",
            "edge",
            "other",
        )
    }
    for c in columns:
        base = c.split("_derivative1")[0].split("_power2")[0]
        if c in MOTION_COLUMNS:
            fam["motion"].append(c)
        elif base in MOTION_COLUMNS:
            fam["motion_expansion"].append(c)
        elif base in ("global_signal", "csf", "white_matter", "csf_wm", "tcompcor"):
            fam["tissue"].append(c)
        elif c in ("framewise_displacement", "rmsd", "dvars", "std_dvars"):
            fam["fd_dvars"].append(c)
        elif c.startswith("cosine"):
            fam["cosine"].append(c)
        elif c.startswith("non_steady_state_outlier"):
            fam["non_steady_state"].append(c)
        elif c.startswith("motion_outlier"):
            fam["motion_outlier"].append(c)
        elif "_comp_cor_" in c:
            fam["compcor"].append(c)
        elif c.startswith("edge_comp_"):
            fam["edge"].append(c)
        else:
            fam["other"].append(c)
    return fam
