"""Python side of so100_driver: ROS-free helpers its launch file (and smolvla_ros's) build on."""
