"""Synthetic BOLD runs with planted network signals and realistic nuisance structure.

Generative model of one run, voxel ``v`` and volume ``t`` (effects in percent of the local mean
intensity ``B(v)``)::

    y(v, t) = B(v) * (1 + nss(t)) * (1 + 0.01 * [network + physio + motion + spin + drift])
              + 0.01 * thermal * B(v) * N(0, 1)

* ``network = a_net * sum_k W_k(v) s_k(t)``: the maps ``W`` (peak 1) weight each network's latent
  signal ``s_k`` (band-limited 0.01-0.1 Hz, unit variance, planted between-network correlation);
* ``physio``: a global signal everywhere, a white-matter signal (mostly in WM) and a CSF signal
  (mostly in the ventricles), each with some grey-matter partial volume, so that the
  ``white_matter``/``csf``/``global_signal`` regressors measured on the data explain them;
* ``motion``: smooth voxel-wise loadings (stronger outside the brain) on the six motion
  parameters (rotations as arcs at 50 mm), so a movement is a signal jump;
* ``spin``: a spin-history intensity drop proportional to the framewise displacement, which
  motion regression cannot remove (DVARS sees it; scrubbing removes it);
* ``drift``: smooth linear + quadratic scanner drift;
* ``nss``: the T1 saturation overshoot of the first, non-steady-state, volumes.

Everything is float64 until the run is cast to float32, and deterministic given the generator.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bids_regionx.synthetic.maps import ellipsoid_mask

#: Mean intensities (arbitrary scanner units) of a T2*-weighted EPI by compartment.
TISSUE_INTENSITY = {"gm": 700.0, "wm": 560.0, "csf": 950.0, "scalp": 250.0}


@dataclass(frozen=True)
class Tissues:
    """Boolean compartments of the synthetic head on the BOLD grid, each shape (x, y, z).

    ``brain = gm | wm | csf`` (disjoint); ``head`` contains ``brain`` plus a scalp shell.
    """

    head: np.ndarray
    brain: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.brain.shape

    @property
    def scalp(self) -> np.ndarray:
        return self.head & ~self.brain


def make_tissues(
    shape: tuple[int, int, int],
    *,
    brain_fill: float = 0.8,
    head_fill: float = 0.95,
    wm_fill: float = 0.5,
) -> Tissues:
    """Build an ellipsoidal head: scalp shell, cortex-like GM shell, WM core, two ventricles.

    Parameters
    ----------
    shape : tuple of 3 int
        Grid shape in voxels.
    brain_fill, head_fill, wm_fill : float
        Half-axes of the brain, head and WM ellipsoids relative to the grid half-extent. The
        brain is :func:`bids_regionx.synthetic.maps.ellipsoid_mask` with ``fill=brain_fill``,
        i.e. the default support of the maps generators.

    Returns
    -------
    Tissues
    """
    if not 0 < wm_fill < brain_fill < head_fill <= 1:
        raise ValueError(
            "fills: need 0 < wm_fill < brain_fill < head_fill <= 1, got "
            f"{wm_fill}, {brain_fill}, {head_fill}"
        )
    brain = ellipsoid_mask(shape, fill=brain_fill)
    head = ellipsoid_mask(shape, fill=head_fill) | brain
    half = np.maximum((np.asarray(shape) - 1) / 2.0, 1.0)
    centre = (np.asarray(shape) - 1) / 2.0
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    u = [(g - centre[i]) / half[i] for i, g in enumerate(grids)]  # -1..1 along each axis
    # Two lateral ventricles; radii at least one voxel so coarse grids still have CSF.
    radii = np.maximum(np.array([0.1, 0.3, 0.15]) * half, 1.0) / half
    csf = np.zeros(shape, dtype=bool)
    for side in (-1.0, 1.0):
        csf |= (
            ((u[0] - side * 0.15) / radii[0]) ** 2
            + (u[1] / radii[1]) ** 2
            + ((u[2] - 0.05) / radii[2]) ** 2
        ) <= 1.0
    csf &= brain
    wm = ellipsoid_mask(shape, fill=wm_fill) & brain & ~csf
    gm = brain & ~wm & ~csf
    return Tissues(head=head, brain=brain, gm=gm, wm=wm, csf=csf)


def band_limited(
    n_volumes: int,
    n_signals: int,
    *,
    t_r: float,
    rng: np.random.Generator,
    band: tuple[float, float] = (0.01, 0.1),
) -> np.ndarray:
    """Gaussian noise restricted to a frequency band, each column z-scored.

    Parameters
    ----------
    n_volumes, n_signals : int
        Output shape.
    t_r : float
        Sampling period in s.
    rng : numpy.random.Generator
        Seeded generator.
    band : tuple of 2 float
        Pass band in Hz; clipped to Nyquist. If it holds no frequency bin of a run this short,
        the lowest non-zero bins are used instead.

    Returns
    -------
    ndarray, shape (n_volumes, n_signals)
    """
    white = rng.standard_normal((n_volumes, n_signals))
    spec = np.fft.rfft(white, axis=0)
    freqs = np.fft.rfftfreq(n_volumes, d=t_r)
    keep = (freqs >= band[0]) & (freqs <= min(band[1], 0.5 / t_r))
    if keep.sum() < 2:
        keep = np.zeros_like(keep)
        keep[1 : min(4, len(keep))] = True
    spec[~keep] = 0.0
    out = np.fft.irfft(spec, n=n_volumes, axis=0)
    out -= out.mean(axis=0)
    return out / out.std(axis=0)


def network_latents(
    n_volumes: int,
    correlation: np.ndarray,
    *,
    t_r: float,
    rng: np.random.Generator,
    band: tuple[float, float] = (0.01, 0.1),
) -> np.ndarray:
    """Latent network time series with a planted correlation structure.

    Parameters
    ----------
    n_volumes : int
        Number of volumes.
    correlation : ndarray, shape (n_maps, n_maps)
        Target correlation between networks (symmetric positive definite).
    t_r : float
        Repetition time in s.
    rng : numpy.random.Generator
        Seeded generator.
    band : tuple of 2 float
        Frequency band in Hz (resting-state fluctuations by default).

    Returns
    -------
    ndarray, shape (n_volumes, n_maps)
        Zero mean, unit variance per column.
    """
    chol = np.linalg.cholesky(np.asarray(correlation, dtype=np.float64))
    latent = band_limited(n_volumes, len(chol), t_r=t_r, rng=rng, band=band) @ chol.T
    latent -= latent.mean(axis=0)
    return latent / latent.std(axis=0)


def physiological_signals(n_volumes: int, *, t_r: float, rng: np.random.Generator) -> np.ndarray:
    """Global, white-matter and CSF nuisance signals, unit variance.

    Returns
    -------
    ndarray, shape (n_volumes, 3)
        Columns: global (0.01-0.05 Hz), white matter (0.01-0.08 Hz), CSF (0.05-0.25 Hz,
        aliased cardiac/respiratory).
    """
    bands = ((0.01, 0.05), (0.01, 0.08), (0.05, 0.25))
    return np.column_stack(
        [band_limited(n_volumes, 1, t_r=t_r, rng=rng, band=b)[:, 0] for b in bands]
    )


def nss_profile(
    n_volumes: int, n_dummy: int, *, overshoot: float = 1.5, decay: float = 0.5
) -> np.ndarray:
    """Relative intensity excess of the non-steady-state volumes.

    Returns
    -------
    ndarray, shape (n_volumes,)
        ``overshoot * decay**t`` for ``t < n_dummy``, exactly 0 afterwards (the first volume is
        ``1 + overshoot`` times brighter than steady state).
    """
    out = np.zeros(n_volumes)
    out[:n_dummy] = overshoot * decay ** np.arange(n_dummy)
    return out


@dataclass(frozen=True)
class BoldAmplitudes:
    """Effect sizes, in percent of the local mean intensity (motion: percent per mm).

    Attributes
    ----------
    network : float
        Signal change at a map's peak for one standard deviation of its latent signal.
    thermal : float
        Standard deviation of the white noise (a temporal SNR of about 100 / thermal).
    global_signal, white_matter, csf : float
        Standard deviation of each physiological signal in its own compartment.
    motion : float
        Standard deviation over the brain of the change per mm of displacement (3x outside).
    spin_history : float
        Drop per mm of framewise displacement at a movement.
    drift : float
        Standard deviation of the linear and quadratic drift coefficients over the brain.
    nss_overshoot, nss_decay : float
        See :func:`nss_profile`.
    """

    network: float = 3.0
    thermal: float = 1.2
    global_signal: float = 0.6
    white_matter: float = 1.0
    csf: float = 2.0
    motion: float = 1.0
    spin_history: float = 2.0
    drift: float = 1.0
    nss_overshoot: float = 1.5
    nss_decay: float = 0.5


#: The default effect sizes.
DEFAULT_AMPLITUDES = BoldAmplitudes()


@dataclass(frozen=True)
class SubjectFields:
    """Spatial fields shared by all runs of one subject.

    Attributes
    ----------
    baseline : ndarray, shape (x, y, z)
        Mean intensity; 0 outside the head.
    motion_loadings : ndarray, shape (x, y, z, 6)
        Percent change per mm (rotations as arcs at 50 mm) of each motion parameter.
    physio_loadings : ndarray, shape (x, y, z, 3)
        Weight (0-1) of the global, WM and CSF signals.
    """

    baseline: np.ndarray
    motion_loadings: np.ndarray
    physio_loadings: np.ndarray


def _smooth_field(
    rng: np.random.Generator, shape, sigma: float, support: np.ndarray
) -> np.ndarray:
    """Gaussian-smoothed white noise with unit standard deviation over ``support``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="nearest")
    sd = field[support].std() if support.any() else 1.0
    return field / (sd if sd > 0 else 1.0)


def make_subject_fields(
    tissues: Tissues,
    *,
    rng: np.random.Generator,
    intensity_scale: float = 1.0,
    amplitudes: BoldAmplitudes = DEFAULT_AMPLITUDES,
) -> SubjectFields:
    """Draw a subject's mean image, motion sensitivity and physiological loadings.

    Parameters
    ----------
    tissues : Tissues
        Compartments on the BOLD grid.
    rng : numpy.random.Generator
        Seeded generator.
    intensity_scale : float
        Multiplies all intensities (scanner gain differs between subjects).
    amplitudes : BoldAmplitudes
        Only ``motion`` is used here.

    Returns
    -------
    SubjectFields
    """
    shape = tissues.shape
    sigma = max(1.0, min(shape) / 8.0)  # smooth over ~1/8 of the field of view
    base = np.zeros(shape)
    base[tissues.gm] = TISSUE_INTENSITY["gm"]
    base[tissues.wm] = TISSUE_INTENSITY["wm"]
    base[tissues.csf] = TISSUE_INTENSITY["csf"]
    base[tissues.scalp] = TISSUE_INTENSITY["scalp"]
    bias = np.exp(0.08 * _smooth_field(rng, shape, 2 * sigma, tissues.head))
    texture = 1.0 + 0.03 * _smooth_field(rng, shape, 1.0, tissues.head)
    base *= bias * texture * intensity_scale
    base[~tissues.head] = 0.0

    edge_gain = np.where(tissues.brain, 1.0, 3.0)
    motion = (
        np.stack([_smooth_field(rng, shape, sigma, tissues.brain) for _ in range(6)], axis=-1)
        * (amplitudes.motion * edge_gain)[..., None]
    )

    physio = np.zeros((*shape, 3))
    physio[..., 0] = np.where(tissues.brain, 1.0, 0.3 * tissues.scalp)
    physio[..., 1] = 1.0 * tissues.wm + 0.25 * tissues.gm
    physio[..., 2] = 1.0 * tissues.csf + 0.15 * tissues.gm
    physio[~tissues.head] = 0.0
    return SubjectFields(baseline=base, motion_loadings=motion, physio_loadings=physio)


def simulate_bold_run(
    fields: SubjectFields,
    *,
    maps: np.ndarray,
    latent: np.ndarray,
    physio: np.ndarray,
    motion: np.ndarray,
    fov: np.ndarray,
    n_dummy: int,
    rng: np.random.Generator,
    amplitudes: BoldAmplitudes = DEFAULT_AMPLITUDES,
) -> np.ndarray:
    """Assemble one BOLD run (see the module docstring for the model).

    Parameters
    ----------
    fields : SubjectFields
        The subject's spatial fields.
    maps : ndarray, shape (x, y, z, n_maps)
        Network weights (peak 1), 0 where a network has no signal.
    latent : ndarray, shape (n_volumes, n_maps)
        Latent network signals.
    physio : ndarray, shape (n_volumes, 3)
        Global, WM and CSF signals (unit variance).
    motion : ndarray, shape (n_volumes, 6)
        Motion parameters, mm and rad.
    fov : ndarray of bool, shape (x, y, z)
        Voxels inside the acquired field of view; the image is 0 elsewhere.
    n_dummy : int
        Number of leading non-steady-state volumes.
    rng : numpy.random.Generator
        Seeded generator (drift fields and thermal noise).
    amplitudes : BoldAmplitudes
        Effect sizes.

    Returns
    -------
    ndarray of float32, shape (x, y, z, n_volumes), F-ordered like a NIfTI file's data
    """
    shape = fields.baseline.shape
    n_vol = latent.shape[0]
    if maps.shape[:3] != shape or maps.shape[3] != latent.shape[1]:
        raise ValueError(
            f"maps: shape {maps.shape} does not match the grid {shape} and "
            f"{latent.shape[1]} latent signals"
        )
    if physio.shape != (n_vol, 3) or motion.shape != (n_vol, 6):
        raise ValueError(
            f"physio/motion: expected ({n_vol}, 3) and ({n_vol}, 6), got "
            f"{physio.shape} and {motion.shape}"
        )
    brain_like = fields.physio_loadings[..., 0] > 0
    sigma = max(1.0, min(shape) / 8.0)
    drift_fields = (
        np.stack([_smooth_field(rng, shape, sigma, brain_like) for _ in range(2)], axis=-1)
        * amplitudes.drift
    )

    flat = np.flatnonzero(((fields.baseline > 0) & fov).ravel(order="F"))

    def take(a: np.ndarray) -> np.ndarray:
        return a.reshape(-1, *a.shape[3:], order="F")[flat]

    base = take(fields.baseline)
    disp = np.array(motion, dtype=np.float64)
    disp[:, 3:] *= 50.0  # rotations as arcs (mm) at 50 mm, the same scale FD uses
    # Spin history follows the movement between volumes, not the position: |delta| summed.
    fd = np.concatenate([[0.0], np.abs(np.diff(disp, axis=0)).sum(axis=1)])
    t = np.linspace(-1.0, 1.0, n_vol)
    drift_basis = np.stack([t, 1.5 * t**2 - 0.5])

    effect = amplitudes.network * (take(maps).astype(np.float64) @ latent.T)
    phys_amp = np.array([amplitudes.global_signal, amplitudes.white_matter, amplitudes.csf])
    effect += take(fields.physio_loadings) @ (physio * phys_amp).T
    effect += take(fields.motion_loadings) @ disp.T
    effect -= amplitudes.spin_history * fd[None, :]
    effect += take(drift_fields) @ drift_basis
    nss = nss_profile(
        n_vol, n_dummy, overshoot=amplitudes.nss_overshoot, decay=amplitudes.nss_decay
    )
    values = base[:, None] * (1.0 + nss)[None, :] * (1.0 + 0.01 * effect)
    values += (0.01 * amplitudes.thermal) * base[:, None] * rng.standard_normal(values.shape)

    out = np.zeros((int(np.prod(shape)), n_vol), dtype=np.float32, order="F")
    out[flat] = values
    return out.reshape((*shape, n_vol), order="F")
