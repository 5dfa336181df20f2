// Turning the <ros2_control> tag's parameters (as ros2_control parses them from the URDF) into an
// ArmConfig, without ROS types, so the plugin stays thin and this logic is tested everywhere.
#ifndef SO100_DRIVER__HARDWARE_CONFIG_HPP_
#define SO100_DRIVER__HARDWARE_CONFIG_HPP_

#include <string>
#include <unordered_map>
#include <vector>

#include "so100_driver/so100_arm.hpp"

namespace so100_driver
{

using ParameterMap = std::unordered_map<std::string, std::string>;

/// State interfaces the hardware can fill, besides position and velocity.
extern const std::vector<std::string> kOptionalStateInterfaces;  // load, temperature, voltage

/// One <joint> of the <ros2_control> tag.
struct JointDescription
{
  std::string name;
  ParameterMap parameters;                  ///< <param> children, e.g. id
  std::vector<std::string> command_interfaces;
  std::vector<std::string> state_interfaces;
};

/// Build the arm configuration from the hardware parameters and joints. Hardware parameters:
/// port (required), baud (1000000), calibration_file (LeRobot JSON; without it every joint needs
/// an `id` and gets the full tick range), reply_timeout_ms (20), retries (2),
/// max_consecutive_failures (5), slow_state_period (10), write_calibration (true), range_tolerance_ticks (50),
/// gripper_joint (gripper), gripper_max_torque (500), gripper_protection_current (250),
/// gripper_overload_torque (25). Each joint needs the `position` command interface and the
/// `position` and `velocity` state interfaces; `load`, `temperature`, `voltage` are optional.
/// Throws std::invalid_argument naming the parameter or joint.
ArmConfig make_arm_config(const ParameterMap & hardware, const std::vector<JointDescription> & joints);

/// Value of state interface `interface` (position, velocity, load, temperature, voltage) of `state`.
double state_value(const JointState & state, const std::string & interface);

}  // namespace so100_driver

#endif  // SO100_DRIVER__HARDWARE_CONFIG_HPP_
