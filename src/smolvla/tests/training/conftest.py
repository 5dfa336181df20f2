"""Fixtures of the training tests: no network."""

from __future__ import annotations

import pytest
from rosbag_files import default_streams, write_bag


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test may reach the hub: huggingface_hub refuses network access."""
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def bags(tmp_path_factory):
    """Two episodes: sqlite3 with the run's task, mcap with its own task.txt."""
    root = tmp_path_factory.mktemp("bags")
    write_bag(root / "episode_0", storage="sqlite3")
    second = write_bag(root / "episode_1", default_streams(700.0), storage="mcap")
    (second / "task.txt").write_text("put the cube on the target\n")
    return root
