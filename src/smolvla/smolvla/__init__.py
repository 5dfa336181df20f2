"""SmolVLA for ROS 2, the ROS-free part: model, asynchronous action-queue core, simulation and training."""

__version__ = "0.1.0"
