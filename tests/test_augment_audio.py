"""Audio augmentation and front-end normalisation: the properties training relies on."""

from __future__ import annotations

import numpy as np
import torch

from crossmodal.aligner.audio_towers import LogMelFrontend
from crossmodal.aligner.config import AudioCnnCfg
from crossmodal.training.augment_audio import AudioAugmentCfg, FeatureAugment, StyleMix, augment_waveform

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


def _tempo_only(**changes: object) -> FeatureAugment:
    cfg = AudioAugmentCfg(freq_warp=(1.0, 1.0), eq_amplitude=0.0, time_mask_frames=0, freq_mask_bins=0,
                          **changes)
    return FeatureAugment(cfg, seed=3)


def test_tempo_warp_stretches_time_monotonically_and_keeps_padding_silent():
    """Each clip's frames become a monotone resampling of its own frames (first to last, pitch
    axis untouched), its new length follows the stretch, and padding stays zero."""
    frames = torch.tensor([60, 33, 9, 1])
    ramp = torch.arange(1, 61, dtype=torch.float32)
    bands = torch.arange(1, 41, dtype=torch.float32)
    valid = torch.arange(60)[None, :] < frames[:, None]
    spec = bands[None, None, :, None] * ramp[None, None, None, :] * valid[:, None, None, :]
    out, new_frames = _tempo_only(tempo=(0.6, 1.6), tempo_jitter=0.3)(spec, frames)
    assert out.shape[-1] >= spec.shape[-1]
    for i, (n, m) in enumerate(zip(frames.tolist(), new_frames.tolist())):
        assert round(0.6 * n) - 1 <= m <= round(1.6 * n) + 1
        row = out[i, 0, 0, :m]
        assert row[0] == 1 and abs(float(row[-1]) - n) < 1e-4
        assert bool((row[1:] >= row[:-1] - 1e-5).all())
        assert torch.allclose(out[i, 0, :, :m], row[None, :] * bands[:, None])
        assert torch.count_nonzero(out[i, :, :, m:]) == 0


def test_tempo_warp_varies_the_rate_and_is_off_by_default():
    frames = torch.full((64,), 40)
    spec = torch.randn(64, 1, 40, 40)
    _, lengths = _tempo_only(tempo=(0.6, 1.6))(spec, frames)
    assert lengths.min() < 30 and lengths.max() > 55
    out, same = _tempo_only()(spec, frames)
    assert torch.equal(same, frames) and torch.allclose(out, spec, atol=1e-5)


def test_band_mean_norm_removes_a_fixed_filter():
    """A constant per-band gain (a microphone's colour) vanishes from band-mean-normalised features."""
    cfg = AudioCnnCfg(bin_mean_norm=True)
    frontend = LogMelFrontend(cfg)
    rng = np.random.default_rng(0)
    voice = rng.standard_normal(SR).astype(np.float32) * np.hanning(SR).astype(np.float32) * 0.1
    from scipy import signal

    coloured = signal.sosfilt(signal.butter(1, 1200, "lowpass", fs=SR, output="sos"), voice).astype(np.float32)
    waves = torch.from_numpy(np.stack([voice, coloured]))
    lengths = torch.tensor([SR, SR])
    feats, frames = frontend(waves, lengths)
    band_means = feats.mean(dim=-1)
    assert band_means.abs().max() < 1e-4
    plain, _ = LogMelFrontend(AudioCnnCfg(bin_mean_norm=False))(waves, lengths)
    assert (plain[0] - plain[1]).abs().mean() > 3 * (feats[0] - feats[1]).abs().mean()


def _channel_stats(x: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    valid = x[..., :n]
    return valid.mean(dim=(1, 2)), valid.std(dim=(1, 2), unbiased=False)


def test_style_mix_gives_each_clip_statistics_between_its_own_and_anothers():
    torch.manual_seed(0)
    steps = torch.tensor([20, 12, 20, 7])
    x = torch.randn(4, 6, 10, 20) * torch.tensor([1.0, 3.0, 0.5, 2.0])[:, None, None, None] \
        + torch.tensor([0.0, 5.0, -2.0, 1.0])[:, None, None, None]
    for i, n in enumerate(steps.tolist()):
        x[i, :, :, n:] = 0
    out = StyleMix(AudioAugmentCfg(style_mix_prob=1.0, style_mix_alpha=1.0), seed=2)(x, steps)
    assert out.shape == x.shape and torch.isfinite(out).all()
    means_in = torch.stack([_channel_stats(x[i], n)[0] for i, n in enumerate(steps.tolist())])
    means_out = torch.stack([_channel_stats(out[i], n)[0] for i, n in enumerate(steps.tolist())])
    low, high = means_in.min(dim=0).values, means_in.max(dim=0).values
    assert ((means_out >= low - 1e-4) & (means_out <= high + 1e-4)).all(), "mixed means lie between clips' means"
    assert not torch.allclose(means_out, means_in, atol=1e-3), "some clip took on another's statistics"
    for i, n in enumerate(steps.tolist()):
        assert torch.count_nonzero(out[i, :, :, n:]) == 0


def test_style_mix_is_off_by_default():
    x = torch.randn(4, 3, 5, 8)
    assert StyleMix(AudioAugmentCfg(), seed=0)(x, torch.full((4,), 8)) is x


def _band_db(x: np.ndarray, lo: float, hi: float) -> float:
    spectrum = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    return float(10 * np.log10(spectrum[(freqs >= lo) & (freqs < hi)].sum() + 1e-12))


def test_band_noise_fills_the_upper_band_at_the_asked_snr_and_leaves_the_low_band():
    x = _tone(1.0, 300.0) + 0.05 * _tone(1.0, 3400.0)
    cfg = AudioAugmentCfg(speed=(1.0, 1.0), gain_db=(0.0, 0.0), reverb_prob=0, lowpass_prob=0, highpass_prob=0,
                          low_rate_prob=0, pad_seconds=(0.0, 0.0), noise_prob=0, clip_prob=0, band_noise_prob=1.0,
                          band_noise_hz=(2000.0, 2000.0), band_snr_db=(0.0, 0.0))
    y = augment_waveform(x, SR, cfg, np.random.default_rng(0))
    added = y - x
    assert abs(_band_db(added, 2500, 4000) - _band_db(x, 2500, 4000)) < 3.0, "about 0 dB SNR in the band"
    assert _band_db(added, 0, 700) < _band_db(x, 0, 700) - 25, "well below the cutoff the band stays clean"


def test_band_noise_is_off_by_default_and_then_draws_nothing():
    x = _tone()
    assert AudioAugmentCfg().band_noise_prob == 0
    a = augment_waveform(x, SR, AudioAugmentCfg(), np.random.default_rng(5))
    b = augment_waveform(x, SR, AudioAugmentCfg(band_noise_prob=0.0, band_snr_db=(1.0, 2.0)), np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
