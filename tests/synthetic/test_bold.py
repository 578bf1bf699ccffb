"""Unit tests of bids_regionx.synthetic.bold (the generative BOLD model)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bids_regionx.synthetic import bold
from bids_regionx.synthetic.maps import ellipsoid_mask


def test_tissues_partition_the_brain():
    t = bold.make_tissues((20, 24, 20))
    assert not (t.gm & t.wm).any() and not (t.gm & t.csf).any() and not (t.wm & t.csf).any()
    np.testing.assert_array_equal(t.gm | t.wm | t.csf, t.brain)
    np.testing.assert_array_equal(t.brain, ellipsoid_mask((20, 24, 20)))  # the maps' support
    assert (t.brain <= t.head).all() and t.csf.sum() > 0 and t.scalp.sum() > 0
    with pytest.raises(ValueError, match="fills"):
        bold.make_tissues((20, 24, 20), wm_fill=0.9)


def test_band_limited_and_latents():
    rng = np.random.default_rng(0)
    x = bold.band_limited(400, 2, t_r=2.0, rng=rng, band=(0.01, 0.1))
    np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=0), 1)
    freqs = np.fft.rfftfreq(400, 2.0)
    power = np.abs(np.fft.rfft(x, axis=0)) ** 2
    assert power[freqs > 0.1].sum() < 1e-12 * power.sum()
    corr = np.array([[1.0, 0.6], [0.6, 1.0]])
    lat = bold.network_latents(2000, corr, t_r=1.0, rng=rng, band=(0.01, 0.4))
    assert abs(np.corrcoef(lat.T)[0, 1] - 0.6) < 0.1


def test_nss_profile():
    prof = bold.nss_profile(10, 3, overshoot=1.5, decay=0.5)
    np.testing.assert_allclose(prof[:4], [1.5, 0.75, 0.375, 0.0])
    assert np.all(bold.nss_profile(10, 0) == 0)


def test_simulate_bold_run_model():
    shape = (12, 14, 12)
    tissues = bold.make_tissues(shape)
    rng = np.random.default_rng(3)
    fields = bold.make_subject_fields(tissues, rng=rng)
    n = 30
    maps = np.zeros((*shape, 1))
    maps[3, 7, 6, 0] = 1.0
    latent = np.linspace(-1, 1, n)[:, None]
    quiet = dataclasses.replace(
        bold.DEFAULT_AMPLITUDES,
        thermal=0.0,
        global_signal=0.0,
        white_matter=0.0,
        csf=0.0,
        motion=0.0,
        drift=0.0,
    )
    fov = tissues.head.copy()
    fov[:, :, 9:] = False
    run = bold.simulate_bold_run(
        fields,
        maps=maps,
        latent=latent,
        physio=np.zeros((n, 3)),
        motion=np.zeros((n, 6)),
        fov=fov,
        n_dummy=2,
        rng=rng,
        amplitudes=quiet,
    )
    assert run.dtype == np.float32 and run.shape == (*shape, n) and run.flags.f_contiguous
    assert np.all(run[~fov] == 0)
    base = fields.baseline[3, 7, 6]
    expected = base * (1 + 0.01 * quiet.network * latent[2:, 0])
    np.testing.assert_allclose(run[3, 7, 6, 2:], expected, rtol=1e-6)
    assert run[3, 7, 6, 0] == pytest.approx(base * 2.5 * (1 - 0.01 * quiet.network), rel=1e-6)
    other = run[tissues.gm & fov & (maps[..., 0] == 0)]
    np.testing.assert_allclose(other[:, 2:], other[:, 2:3].repeat(n - 2, axis=1), rtol=1e-6)
    with pytest.raises(ValueError, match="maps"):
        bold.simulate_bold_run(
            fields,
            maps=maps[..., :0],
            latent=latent,
            physio=np.zeros((n, 3)),
            motion=np.zeros((n, 6)),
            fov=fov,
            n_dummy=0,
            rng=rng,
        )
