"""Fixtures of the SmolVLA model tests: tiny checkpoints and policies built locally (no network)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from smolvla.policy import SmolVLAPolicy, make_tiny_checkpoint


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test may reach the hub: huggingface_hub refuses network access."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A tiny 2-camera checkpoint directory in the published layout."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"), n_cameras=2, chunk_size=10, seed=3)


@pytest.fixture(scope="session")
def tiny_policy(tiny_dir) -> SmolVLAPolicy:
    """The tiny checkpoint loaded in float32."""
    return SmolVLAPolicy.from_pretrained(str(tiny_dir))


def _random_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A blocky random RGB image (uint8), so that resizing keeps information."""
    coarse = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3)).astype(np.float32)
    return np.kron(coarse, np.ones((8, 8, 1)))[:height, :width].astype(np.uint8)


@pytest.fixture()
def random_image():
    """Factory: random_image(height=96, width=128, seed=0) -> HxWx3 uint8."""

    def make(height: int = 96, width: int = 128, seed: int = 0) -> np.ndarray:
        return _random_image(np.random.default_rng(seed), height, width)

    return make


@pytest.fixture()
def observation(tiny_policy, random_image):
    """Factory: observation(seed) -> (images, state, instruction) for the tiny policy."""

    def make(seed: int = 0, instruction: str = "pick up the red cube"):
        images = [random_image(seed=seed * 10 + i) for i in range(len(tiny_policy.camera_names))]
        state = np.random.default_rng(seed).normal(size=tiny_policy.state_dim).astype(np.float32)
        return images, state, instruction

    return make


@pytest.fixture()
def noise(tiny_policy) -> torch.Tensor:
    """Fixed noise (1, chunk, max_action_dim)."""
    gen = torch.Generator().manual_seed(0)
    return torch.randn(1, tiny_policy.chunk_size, tiny_policy.config.max_action_dim, generator=gen)
