"""Image augmentation for training from scratch: random shifts and colour jitter on a batch of camera images.

A model that learns its vision from a few dozen episodes memorises exact pixels; a shift of a few pixels (the
random-shift augmentation of DrQ) and brightness, contrast and per-channel gain changes (lighting, white balance)
make it look at where things are instead. Applied per image on the batch, on the training thread, after the cached
frames are read; validation and inference see unaugmented images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    """Strengths: shift in pixels (each direction), brightness/contrast/channel gain as relative ranges."""

    shift: int = 4
    brightness: float = 0.2
    contrast: float = 0.2
    channel_gain: float = 0.05

    def __post_init__(self) -> None:
        if self.shift < 0:
            raise ValueError(f"shift must be >= 0 pixels, got {self.shift}")
        for name in ("brightness", "contrast", "channel_gain"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def __call__(self, images: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """images (B, C, 3, H, W) in [0, 1], mask (B, C) of present cameras: a new augmented tensor in [0, 1]
        (absent cameras stay as they are)."""
        b, c, ch, h, w = images.shape
        flat = images.reshape(b * c, ch, h, w)
        n = flat.shape[0]
        if self.shift:
            s = self.shift
            padded = F.pad(flat, (s, s, s, s), mode="replicate")
            dx = torch.randint(0, 2 * s + 1, (n,), generator=generator)
            dy = torch.randint(0, 2 * s + 1, (n,), generator=generator)
            rows = (dy[:, None] + torch.arange(h)[None, :])[:, None, :, None].expand(n, ch, h, w + 2 * s)
            shifted = padded.gather(2, rows)
            cols = (dx[:, None] + torch.arange(w)[None, :])[:, None, None, :].expand(n, ch, h, w)
            flat = shifted.gather(3, cols)

        def uniform(spread: float, *shape: int) -> torch.Tensor:
            return 1.0 + (torch.rand(*shape, generator=generator) * 2.0 - 1.0) * spread

        mean = flat.mean(dim=(1, 2, 3), keepdim=True)
        flat = (flat - mean) * uniform(self.contrast, n, 1, 1, 1) + mean
        flat = flat * uniform(self.brightness, n, 1, 1, 1) * uniform(self.channel_gain, n, ch, 1, 1)
        out = flat.clamp_(0.0, 1.0).reshape(b, c, ch, h, w)
        keep = mask.reshape(b, c, 1, 1, 1).to(out.dtype)
        return out * keep + images * (1.0 - keep)
