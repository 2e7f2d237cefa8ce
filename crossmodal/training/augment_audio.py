"""Audio augmentation that imitates what real recordings bring and FSDD lacks.

Waveform level (per clip, numpy): speed (tempo and pitch together), reverberation,
microphone band limits, a lower original sample rate, leading/trailing silence, background
noise of several colours, gain and clipping. Feature level (per batch, torch): mel-axis
warping (vocal-tract length), a random smooth equaliser curve over the mel bands (the
colouring of a microphone, a room or a voice), and SpecAugment time/frequency masks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import signal
from torch.nn import functional as F

from crossmodal.aligner.audio_towers import trim_silence
from crossmodal.aligner.config import AudioCnnCfg


@dataclass
class AudioAugmentCfg:
    """Ranges and probabilities of each perturbation; the defaults are the starter recipe's."""

    speed: tuple[float, float] = (0.85, 1.18)
    reverb_prob: float = 0.3
    rt60: tuple[float, float] = (0.1, 0.7)
    lowpass_prob: float = 0.35
    lowpass_hz: tuple[float, float] = (1500.0, 3800.0)
    highpass_prob: float = 0.35
    highpass_hz: tuple[float, float] = (60.0, 400.0)
    low_rate_prob: float = 0.15
    low_rate_hz: tuple[float, float] = (4000.0, 7000.0)
    pad_seconds: tuple[float, float] = (0.0, 0.6)
    noise_prob: float = 0.6
    snr_db: tuple[float, float] = (3.0, 40.0)
    gain_db: tuple[float, float] = (-25.0, 12.0)
    clip_prob: float = 0.05
    freq_warp: tuple[float, float] = (0.87, 1.15)
    time_mask_frames: int = 8
    freq_mask_bins: int = 6
    eq_amplitude: float = 0.8
    eq_terms: int = 4


def _coloured_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n).astype(np.float32)
    colour = rng.integers(3)
    if colour == 0 or n < 4:
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.arange(1, spectrum.size + 1, dtype=np.float32)
    spectrum /= np.sqrt(freqs) if colour == 1 else freqs
    noise = np.fft.irfft(spectrum, n).astype(np.float32)
    return noise / (noise.std() + 1e-8)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2) + 1e-12))


def augment_waveform(x: np.ndarray, sr: int, cfg: AudioAugmentCfg, rng: np.random.Generator) -> np.ndarray:
    """One randomly perturbed copy of a mono clip at the model rate ``sr``."""
    x = x.astype(np.float32, copy=True)
    factor = rng.uniform(*cfg.speed)
    if abs(factor - 1.0) > 1e-3 and x.size > 1:
        new_len = max(2, int(round(x.size / factor)))
        x = np.interp(np.linspace(0, x.size - 1, new_len), np.arange(x.size), x).astype(np.float32)
    if rng.random() < cfg.reverb_prob:
        rt60 = rng.uniform(*cfg.rt60)
        t = np.arange(int(rt60 * sr)) / sr
        rir = rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
        rir[0] = 1.0
        wet = signal.fftconvolve(x, rir / np.abs(rir).sum() * 4.0)[: x.size]
        mix = rng.uniform(0.3, 1.0)
        x = ((1 - mix) * x + mix * wet * _rms(x) / _rms(wet)).astype(np.float32)
    nyquist = sr / 2
    if rng.random() < cfg.lowpass_prob:
        cutoff = min(rng.uniform(*cfg.lowpass_hz), 0.95 * nyquist)
        x = signal.sosfilt(signal.butter(4, cutoff, "lowpass", fs=sr, output="sos"), x).astype(np.float32)
    if rng.random() < cfg.highpass_prob:
        cutoff = rng.uniform(*cfg.highpass_hz)
        x = signal.sosfilt(signal.butter(2, cutoff, "highpass", fs=sr, output="sos"), x).astype(np.float32)
    if rng.random() < cfg.low_rate_prob:
        import soxr

        low = int(rng.uniform(*cfg.low_rate_hz))
        x = soxr.resample(soxr.resample(x, sr, low), low, sr).astype(np.float32)
    lead, trail = (int(rng.uniform(*cfg.pad_seconds) * sr) for _ in range(2))
    x = np.concatenate([np.zeros(lead, np.float32), x, np.zeros(trail, np.float32)])
    if rng.random() < cfg.noise_prob:
        snr = rng.uniform(*cfg.snr_db)
        noise = _coloured_noise(x.size, rng)
        x = x + noise * (_rms(x) / 10 ** (snr / 20))
    x = x * 10 ** (rng.uniform(*cfg.gain_db) / 20)
    if rng.random() < cfg.clip_prob:
        limit = np.abs(x).max() * rng.uniform(0.3, 0.8)
        x = np.clip(x, -limit, limit)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def audio_training_view(x: np.ndarray, cfg: AudioCnnCfg, augment: AudioAugmentCfg | None,
                        rng: np.random.Generator) -> np.ndarray:
    """What the audio tower trains on from one clip: perturbed (unless ``augment`` is None),
    trimmed of silence as inference trims it, and cut to one random model window if longer."""
    if augment is not None:
        x = augment_waveform(x, cfg.sample_rate, augment, rng)
    begin, end = trim_silence(x, cfg.sample_rate, cfg.trim_top_db)
    x = x[begin:end]
    window = int(cfg.window_seconds * cfg.sample_rate)
    if x.size > window:
        offset = int(rng.integers(0, x.size - window + 1))
        x = x[offset:offset + window]
    return x


class FeatureAugment:
    """Batch-level mel warping and masking, applied inside the audio backbone during training."""

    def __init__(self, cfg: AudioAugmentCfg, seed: int) -> None:
        self.cfg = cfg
        self.generator = torch.Generator().manual_seed(seed)

    def _uniform(self, n: int, lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=self.generator)

    def _eq_curves(self, batch: int, bins: int) -> torch.Tensor:
        """Smooth random gains per mel band: a few cosines with amplitudes falling as 1/k."""
        terms = self.cfg.eq_terms
        if terms <= 0 or self.cfg.eq_amplitude <= 0:
            return torch.zeros(batch, bins)
        k = torch.arange(1, terms + 1, dtype=torch.float32)
        amp = (torch.rand(batch, terms, generator=self.generator) * 2 - 1) * self.cfg.eq_amplitude / k
        basis = torch.cos(torch.pi * k[:, None] * torch.arange(bins, dtype=torch.float32)[None, :] / max(bins - 1, 1))
        return amp @ basis

    def __call__(self, spec: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, bins, t = spec.shape
        factors = self._uniform(b, *self.cfg.freq_warp).to(spec.device, spec.dtype)
        pos = torch.arange(bins, dtype=spec.dtype, device=spec.device)[None, :] / factors[:, None]
        grid_y = (pos / (bins - 1)) * 2 - 1
        grid_x = torch.linspace(-1, 1, t, device=spec.device, dtype=spec.dtype)
        grid = torch.stack(torch.broadcast_tensors(grid_x[None, None, :], grid_y[:, :, None]), dim=-1)
        spec = F.grid_sample(spec, grid, mode="bilinear", padding_mode="border", align_corners=True)
        spec = spec + self._eq_curves(b, bins).to(spec.device, spec.dtype)[:, None, :, None]
        frame_idx = torch.arange(t, device=spec.device)[None, :]
        width = (torch.rand(b, generator=self.generator) * (self.cfg.time_mask_frames + 1)).long().to(spec.device)
        start = (torch.rand(b, generator=self.generator).to(spec.device) * (frames - width).clamp_min(0)).long()
        tmask = (frame_idx >= start[:, None]) & (frame_idx < (start + width)[:, None])
        bin_idx = torch.arange(bins, device=spec.device)[None, :]
        fwidth = (torch.rand(b, generator=self.generator) * (self.cfg.freq_mask_bins + 1)).long().to(spec.device)
        fstart = (torch.rand(b, generator=self.generator).to(spec.device) * (bins - fwidth)).long()
        fmask = (bin_idx >= fstart[:, None]) & (bin_idx < (fstart + fwidth)[:, None])
        valid = (frame_idx < frames[:, None])[:, None, None, :]
        masked = tmask[:, None, None, :] | fmask[:, None, :, None]
        return spec.masked_fill(masked, 0.0) * valid, frames
