"""Audio augmentation and front-end normalisation: the properties training relies on."""

from __future__ import annotations

import numpy as np
import torch

from crossmodal.training.augment_audio import AudioAugmentCfg, FeatureAugment, augment_waveform

SR = 8000


def _tone(seconds: float = 0.5, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def test_augment_waveform_is_seeded_bounded_and_finite():
    x = _tone()
    cfg = AudioAugmentCfg()
    a = augment_waveform(x, SR, cfg, np.random.default_rng(3))
    b = augment_waveform(x, SR, cfg, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and np.isfinite(a).all() and np.abs(a).max() <= 1.0
    outs = [augment_waveform(x, SR, cfg, np.random.default_rng(s)) for s in range(8)]
    assert len({o.size for o in outs}) > 1, "speed and padding should change the length"


def test_eq_curves_are_smooth_bounded_and_varied():
    cfg = AudioAugmentCfg(eq_amplitude=0.8, eq_terms=4)
    curves = FeatureAugment(cfg, seed=0)._eq_curves(64, 40)
    assert curves.shape == (64, 40)
    bound = cfg.eq_amplitude * sum(1 / k for k in range(1, cfg.eq_terms + 1))
    assert curves.abs().max() <= bound + 1e-5
    assert curves.std(dim=0).mean() > 0.1, "curves should differ between clips"
    steps = curves.diff(dim=1).abs().max()
    assert steps < 0.5 * curves.abs().max(), "a few low-order cosines move slowly across bands"


def test_eq_can_be_switched_off():
    off = FeatureAugment(AudioAugmentCfg(eq_amplitude=0.0), seed=0)._eq_curves(4, 40)
    assert torch.count_nonzero(off) == 0


def test_feature_augment_keeps_padding_silent():
    cfg = AudioAugmentCfg()
    spec = torch.randn(3, 1, 40, 50)
    frames = torch.tensor([50, 30, 10])
    out, out_frames = FeatureAugment(cfg, seed=1)(spec, frames)
    assert out.shape == spec.shape
    assert torch.equal(out_frames, frames)
    for i, n in enumerate(frames.tolist()):
        assert torch.count_nonzero(out[i, :, :, n:]) == 0
