"""Audio backbone: resample and window raw audio, log-mel front end, CNN with length-aware pooling."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from crossmodal.aligner.config import AudioCnnCfg
from crossmodal.media import Waveform


@dataclass(frozen=True)
class AudioWindow:
    """One model-sized window of a clip: mono samples at the model rate, and where it lies."""

    samples: np.ndarray
    start: float
    end: float


def to_model_rate(wave: Waveform, sample_rate: int, source: str = "audio") -> np.ndarray:
    """Downmix to mono and resample to the model rate (soxr: any ratio, anti-aliased)."""
    samples = np.asarray(wave.samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1)
    if samples.ndim != 1:
        raise ValueError(f"{source}: audio must be (frames,) or (frames, channels), got shape {samples.shape}")
    if samples.size == 0:
        raise ValueError(f"{source}: audio has no samples")
    if not np.isfinite(samples).all():
        raise ValueError(f"{source}: audio contains NaN or infinite samples")
    if wave.sample_rate <= 0:
        raise ValueError(f"{source}: invalid sample rate {wave.sample_rate}")
    if wave.sample_rate != sample_rate:
        import soxr

        samples = soxr.resample(samples, wave.sample_rate, sample_rate).astype(np.float32)
    return samples


def frame_energy_db(samples: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """RMS level in dB of each frame (the last frame may be partial)."""
    if samples.size < frame:
        samples = np.pad(samples, (0, frame - samples.size))
    count = 1 + (samples.size - frame) // hop
    idx = np.arange(frame)[None, :] + hop * np.arange(count)[:, None]
    rms = np.sqrt(np.mean(samples[idx] ** 2, axis=1) + 1e-12)
    return 20.0 * np.log10(rms)


def trim_silence(samples: np.ndarray, sample_rate: int, top_db: float) -> tuple[int, int]:
    """Span [begin, end) holding everything louder than ``top_db`` below the peak, plus 50 ms."""
    frame, hop = max(1, int(0.025 * sample_rate)), max(1, int(0.010 * sample_rate))
    level = frame_energy_db(samples, frame, hop)
    loud = np.flatnonzero(level > level.max() - top_db)
    if loud.size == 0:
        return 0, samples.size
    margin = int(0.05 * sample_rate)
    begin = max(0, loud[0] * hop - margin)
    end = min(samples.size, loud[-1] * hop + frame + margin)
    return begin, end


def split_windows(wave: Waveform, cfg: AudioCnnCfg, source: str = "audio") -> list[AudioWindow]:
    """Cut a clip into model windows with start/end seconds on the clip's own time line.

    Leading and trailing silence is trimmed first, so a short word in a long recording is
    one window. Audio longer than the window is cut every ``hop_seconds`` (the last window
    ends at the end of the sound); windows that are near-silent compared with the loudest
    part are dropped, but one window always remains.
    """
    sr = cfg.sample_rate
    samples = to_model_rate(wave, sr, source)
    begin, end = trim_silence(samples, sr, cfg.trim_top_db)
    sound = samples[begin:end]
    window = int(round(cfg.window_seconds * sr))
    hop = int(round(cfg.hop_seconds * sr))
    if sound.size <= window:
        return [AudioWindow(sound, begin / sr, end / sr)]
    starts = list(range(0, sound.size - window + 1, hop))
    if starts[-1] + window < sound.size:
        starts.append(sound.size - window)
    windows = [AudioWindow(sound[s:s + window], (begin + s) / sr, (begin + s + window) / sr) for s in starts]
    levels = np.array([frame_energy_db(w.samples, window, window).max() for w in windows])
    keep = levels > levels.max() - 60.0
    return [w for w, k in zip(windows, keep) if k]


def pad_batch(chunks: list[np.ndarray], min_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad mono chunks to one length; returns (waves (B, T), lengths (B,))."""
    lengths = [max(c.size, min_samples) for c in chunks]
    out = np.zeros((len(chunks), max(lengths)), dtype=np.float32)
    for i, c in enumerate(chunks):
        offset = (lengths[i] - c.size) // 2
        out[i, offset:offset + c.size] = c
    return torch.from_numpy(out), torch.tensor(lengths, dtype=torch.long)


def reflect_pad_each(waves: torch.Tensor, lengths: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad every row by ``pad`` samples on both sides, mirrored at that row's own ends.

    A centred STFT on the padded batch would mirror at the end of the batch row, so the last
    frames of a short clip would see the zeros that stretch it to its longest companion.
    Mirroring at each clip's own end gives every frame a clip owns exactly what
    ``torch.stft(center=True)`` gives that clip alone; what lies further out feeds no such frame.
    """
    width = waves.shape[-1]
    ends = lengths.to(waves.device).clamp(1, width)[:, None]
    k = torch.arange(pad, device=waves.device)[None, :]
    out = F.pad(waves, (pad, pad))
    out[:, :pad] = torch.gather(waves, 1, torch.minimum(pad - k, ends - 1).expand(waves.shape[0], -1))
    out.scatter_(1, ends + pad + k, torch.gather(waves, 1, (ends - 2 - k).clamp_min(0)))
    return out


def time_mask(valid: torch.Tensor, steps: int, like: torch.Tensor) -> torch.Tensor:
    """1 on each clip's first ``valid`` time steps, 0 after, shaped to broadcast over ``like``."""
    mask = torch.arange(steps, device=like.device)[None, :] < valid.to(like.device)[:, None]
    return mask.reshape(mask.shape[0], *([1] * (like.dim() - 2)), steps).to(like.dtype)


FeatureAugment = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class LogMelFrontend(nn.Module):
    """Log-mel spectrogram normalised per utterance over its valid frames only.

    Per-utterance normalisation makes the features independent of recording gain, and the
    dynamic-range floor makes digital silence and quiet noise look alike. The centring pad is
    done per clip (`reflect_pad_each`), so a clip's frames do not depend on its batch.
    """

    def __init__(self, cfg: AudioCnnCfg) -> None:
        super().__init__()
        import torchaudio

        self.hop = cfg.hop_length
        self.n_fft = cfg.n_fft
        self.floor = cfg.dynamic_range_db / 10.0 * math.log(10.0)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, win_length=cfg.win_length,
            hop_length=cfg.hop_length, f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels,
            power=2.0, center=False)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad = self.n_fft // 2
        spec = torch.log(self.mel(reflect_pad_each(waves, lengths, pad)).clamp_min(1e-10))
        frames = torch.clamp((lengths.to(spec.device) + 2 * pad - self.n_fft) // self.hop + 1,
                             min=1, max=spec.shape[-1])
        mask = time_mask(frames, spec.shape[-1], spec).bool()
        peak = spec.masked_fill(~mask, -1e9).amax(dim=(1, 2), keepdim=True)
        spec = torch.maximum(spec, peak - self.floor)
        count = mask.sum(dim=(1, 2), keepdim=True) * spec.shape[1]
        mean = (spec * mask).sum(dim=(1, 2), keepdim=True) / count
        var = (((spec - mean) * mask) ** 2).sum(dim=(1, 2), keepdim=True) / count
        spec = (spec - mean) / torch.sqrt(var + 1e-5) * mask
        return spec.unsqueeze(1), frames


def _masked_pool(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    mask = time_mask(lengths, x.shape[-1], x).bool()
    mean = (x * mask).sum(-1) / mask.sum(-1).clamp_min(1)
    peak = x.masked_fill(~mask, float("-inf")).amax(-1)
    return torch.cat([mean, peak], dim=1)


class AudioCnnBackbone(nn.Module):
    """Conv blocks over (mel, time), then a 1-D layer over time and mean+max pooling of valid frames."""

    def __init__(self, cfg: AudioCnnCfg) -> None:
        super().__init__()
        self.cfg = cfg
        self.frontend = LogMelFrontend(cfg)
        blocks: list[nn.Module] = []
        cin = 1
        self.pools = len(cfg.channels) - 1
        for i, cout in enumerate(cfg.channels):
            blocks += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i < self.pools:
                blocks.append(nn.MaxPool2d(2))
            cin = cout
        self.features = nn.Sequential(*blocks)
        freq = cfg.n_mels
        for _ in range(self.pools):
            freq //= 2
        hidden = 2 * cfg.channels[-1]
        self.temporal = nn.Sequential(
            nn.Conv1d(cin * freq, hidden, 3, padding=1, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(2 * hidden, cfg.output_dim)
        self.output_dim = cfg.output_dim
        self.min_samples = int(math.ceil(cfg.min_seconds * cfg.sample_rate))

    def windows(self, wave: Waveform, source: str = "audio") -> list[AudioWindow]:
        return split_windows(wave, self.cfg, source)

    def collate(self, chunks: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        return pad_batch(chunks, self.min_samples)

    def forward(self, waves: torch.Tensor, lengths: torch.Tensor,
                feature_augment: FeatureAugment | None = None) -> torch.Tensor:
        """``feature_augment`` acts on the log-mel input (for training only).

        The front end zeroes its output past each clip's frames and every later convolution's
        input is zeroed past its valid steps (as a lone clip's zero padding would be), and a 2×2
        pool keeps only the steps it built from valid frames alone, so padding never reaches a
        clip's own steps: a clip's features are the same in any batch as alone.
        """
        x, valid = self.frontend(waves, lengths)
        if feature_augment is not None:
            x, valid = feature_augment(x, valid)
            x = x * time_mask(valid, x.shape[-1], x)
        for i, layer in enumerate(self.features):
            if isinstance(layer, nn.Conv2d) and i > 0:  # the input is masked already
                x = x * time_mask(valid, x.shape[-1], x)
            x = layer(x)
            if isinstance(layer, nn.MaxPool2d):
                valid = torch.div(valid, 2, rounding_mode="floor")
        b, c, f, t = x.shape
        x = x.reshape(b, c * f, t)
        x = self.temporal(x * time_mask(valid, t, x))
        steps = valid.clamp(min=1, max=t)
        return self.proj(self.dropout(_masked_pool(x, steps)))
