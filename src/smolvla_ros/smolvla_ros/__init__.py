"""ROS 2 adapters around the ROS-free `smolvla` package: nodes, message conversion, launcher."""
