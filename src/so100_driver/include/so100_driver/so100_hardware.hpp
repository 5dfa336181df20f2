// ros2_control SystemInterface for the SO-100 arm: thin wiring around So100Arm.
// Written for ros2_control 4.x as released for ROS 2 Jazzy (API of 4.18 and later: interfaces
// exported by the framework from the URDF, set_state()/get_command() by name). From 4.34 on it
// overrides on_init(const HardwareComponentInterfaceParams &), before that on_init(const HardwareInfo &)
// (deprecated since 4.34); hardware_interface/version.h picks the overload at compile time.
#ifndef SO100_DRIVER__SO100_HARDWARE_HPP_
#define SO100_DRIVER__SO100_HARDWARE_HPP_

#include <memory>
#include <string>
#include <vector>

#include "hardware_interface/hardware_info.hpp"
#include "hardware_interface/system_interface.hpp"
#include "hardware_interface/types/hardware_interface_return_values.hpp"
#include "hardware_interface/version.h"
#include "rclcpp/duration.hpp"
#include "rclcpp/time.hpp"
#include "rclcpp_lifecycle/state.hpp"
#include "so100_driver/so100_arm.hpp"

#if HARDWARE_INTERFACE_VERSION_GTE(4, 34, 0)
#include "hardware_interface/types/hardware_component_interface_params.hpp"
#define SO100_DRIVER_INIT_WITH_PARAMS 1
#else
#define SO100_DRIVER_INIT_WITH_PARAMS 0
#endif

namespace so100_driver
{

/// Plugin `so100_driver/So100Hardware`. Lifecycle: configure opens the bus, pings and checks every
/// servo and writes calibration and gripper limits; activate seeds the commands with the present
/// positions and enables torque; deactivate disables it. read()/write() are one SYNC_READ and one
/// SYNC_WRITE; after max_consecutive_failures failed cycles they return ERROR.
class So100Hardware : public hardware_interface::SystemInterface
{
public:
#if SO100_DRIVER_INIT_WITH_PARAMS
  hardware_interface::CallbackReturn on_init(
    const hardware_interface::HardwareComponentInterfaceParams & params) override;
#else
  hardware_interface::CallbackReturn on_init(const hardware_interface::HardwareInfo & info) override;
#endif
  hardware_interface::CallbackReturn on_configure(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::CallbackReturn on_cleanup(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::CallbackReturn on_activate(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::CallbackReturn on_deactivate(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::CallbackReturn on_shutdown(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::CallbackReturn on_error(const rclcpp_lifecycle::State & previous_state) override;
  hardware_interface::return_type read(const rclcpp::Time & time, const rclcpp::Duration & period) override;
  hardware_interface::return_type write(const rclcpp::Time & time, const rclcpp::Duration & period) override;

private:
  hardware_interface::CallbackReturn init_arm(const hardware_interface::HardwareInfo & info);
  void publish_states();
  void release();

  std::unique_ptr<So100Arm> arm_;
  // Per joint, the state interfaces the URDF declares (full names and short names).
  std::vector<std::vector<std::pair<std::string, std::string>>> state_interfaces_;
  std::vector<std::string> command_interfaces_;
};

}  // namespace so100_driver

#endif  // SO100_DRIVER__SO100_HARDWARE_HPP_
