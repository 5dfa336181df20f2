"""SmolVLA policy: the published architecture on torch + transformers, loading and saving LeRobot checkpoints.

Public API: `SmolVLAPolicy` (from_pretrained / predict_chunk / save_pretrained / compute_loss), `SmolVLAConfig`,
`make_tiny_checkpoint` (a tiny random checkpoint in the published layout for tests and demos).
"""

from .checkpoint import CheckpointMismatchError
from .configuration import BackboneConfig, SmolVLAConfig
from .policy import SmolVLAPolicy, flow_matching_loss
from .tiny import make_tiny_checkpoint

__all__ = [
    "BackboneConfig",
    "CheckpointMismatchError",
    "SmolVLAConfig",
    "SmolVLAPolicy",
    "flow_matching_loss",
    "make_tiny_checkpoint",
]
