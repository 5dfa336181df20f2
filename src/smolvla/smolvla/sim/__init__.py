"""Simulated SO-101 arm (MuJoCo, headless) with a pick-and-place task and a scripted joint-space expert.

Plain Python without ROS: smolvla_ros.sim_arm_node and smolvla_ros.expert_policy_node wrap these classes.
"""
