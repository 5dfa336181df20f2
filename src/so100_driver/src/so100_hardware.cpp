#include "so100_driver/so100_hardware.hpp"

#include <exception>
#include <string>
#include <utility>

#include "pluginlib/class_list_macros.hpp"
#include "rclcpp/logging.hpp"
#include "so100_driver/hardware_config.hpp"

namespace so100_driver
{

namespace
{
rclcpp::Logger logger()
{
  return rclcpp::get_logger("So100Hardware");
}

ParameterMap to_map(const std::unordered_map<std::string, std::string> & parameters)
{
  return ParameterMap(parameters.begin(), parameters.end());
}
}  // namespace

#if SO100_DRIVER_INIT_WITH_PARAMS
hardware_interface::CallbackReturn So100Hardware::on_init(
  const hardware_interface::HardwareComponentInterfaceParams & params)
{
  if (SystemInterface::on_init(params) != hardware_interface::CallbackReturn::SUCCESS) {
    return hardware_interface::CallbackReturn::ERROR;
  }
  return init_arm(params.hardware_info);
}
#else
hardware_interface::CallbackReturn So100Hardware::on_init(const hardware_interface::HardwareInfo & info)
{
  if (SystemInterface::on_init(info) != hardware_interface::CallbackReturn::SUCCESS) {
    return hardware_interface::CallbackReturn::ERROR;
  }
  return init_arm(info);
}
#endif

hardware_interface::CallbackReturn So100Hardware::init_arm(const hardware_interface::HardwareInfo & info)
{
  std::vector<JointDescription> joints;
  state_interfaces_.clear();
  command_interfaces_.clear();
  for (const auto & joint : info.joints) {
    JointDescription description{joint.name, to_map(joint.parameters), {}, {}};
    std::vector<std::pair<std::string, std::string>> states;
    for (const auto & command : joint.command_interfaces) {
      description.command_interfaces.push_back(command.name);
    }
    for (const auto & state : joint.state_interfaces) {
      description.state_interfaces.push_back(state.name);
      states.emplace_back(joint.name + "/" + state.name, state.name);
    }
    joints.push_back(std::move(description));
    state_interfaces_.push_back(std::move(states));
    command_interfaces_.push_back(joint.name + "/position");
  }
  try {
    arm_ = std::make_unique<So100Arm>(make_arm_config(to_map(info.hardware_parameters), joints));
  } catch (const std::exception & error) {
    RCLCPP_FATAL(logger(), "invalid <ros2_control> configuration: %s", error.what());
    return hardware_interface::CallbackReturn::ERROR;
  }
  RCLCPP_INFO(logger(), "SO-100 on %s, %zu joints", arm_->config().port.c_str(), joints.size());
  return hardware_interface::CallbackReturn::SUCCESS;
}

void So100Hardware::publish_states()
{
  const auto & states = arm_->states();
  for (std::size_t i = 0; i < states.size(); ++i) {
    for (const auto & [full_name, interface] : state_interfaces_[i]) {
      set_state(full_name, state_value(states[i], interface));
    }
  }
}

hardware_interface::CallbackReturn So100Hardware::on_configure(const rclcpp_lifecycle::State &)
{
  try {
    arm_->configure();
  } catch (const std::exception & error) {
    RCLCPP_ERROR(logger(), "configure failed: %s", error.what());
    return hardware_interface::CallbackReturn::FAILURE;
  }
  publish_states();
  RCLCPP_INFO(logger(), "all servos answered as STS3215; calibration and gripper limits in place");
  // Commands are clamped to these; compare them with the URDF limits the controllers use.
  for (const auto & joint : arm_->config().joints) {
    RCLCPP_INFO(
      logger(), "joint '%s' (servo %d): calibrated range [%.3f, %.3f] rad", joint.name.c_str(), joint.id,
      joint.lower_limit(), joint.upper_limit());
  }
  return hardware_interface::CallbackReturn::SUCCESS;
}

hardware_interface::CallbackReturn So100Hardware::on_cleanup(const rclcpp_lifecycle::State &)
{
  arm_->disconnect();
  return hardware_interface::CallbackReturn::SUCCESS;
}

hardware_interface::CallbackReturn So100Hardware::on_activate(const rclcpp_lifecycle::State &)
{
  try {
    arm_->activate();
  } catch (const std::exception & error) {
    RCLCPP_ERROR(logger(), "activate failed: %s", error.what());
    release();
    return hardware_interface::CallbackReturn::ERROR;
  }
  publish_states();
  // Controllers that start from the command interfaces must see where the arm is, not NaN.
  for (std::size_t i = 0; i < command_interfaces_.size(); ++i) {
    set_command(command_interfaces_[i], arm_->commands()[i]);
  }
  RCLCPP_INFO(logger(), "torque enabled");
  return hardware_interface::CallbackReturn::SUCCESS;
}

hardware_interface::CallbackReturn So100Hardware::on_deactivate(const rclcpp_lifecycle::State &)
{
  try {
    arm_->deactivate();
  } catch (const std::exception & error) {
    RCLCPP_ERROR(logger(), "deactivate: %s", error.what());
    return hardware_interface::CallbackReturn::ERROR;
  }
  RCLCPP_INFO(logger(), "torque disabled");
  return hardware_interface::CallbackReturn::SUCCESS;
}

void So100Hardware::release()
{
  // Best effort on the way down: a servo that still answers must not stay stiff.
  if (arm_->connected() && arm_->torque_enabled()) {
    try {
      arm_->deactivate();
    } catch (const std::exception & error) {
      RCLCPP_ERROR(logger(), "could not disable torque everywhere: %s", error.what());
    }
  }
  arm_->disconnect();
}

hardware_interface::CallbackReturn So100Hardware::on_shutdown(const rclcpp_lifecycle::State &)
{
  release();
  return hardware_interface::CallbackReturn::SUCCESS;
}

hardware_interface::CallbackReturn So100Hardware::on_error(const rclcpp_lifecycle::State &)
{
  release();
  return hardware_interface::CallbackReturn::SUCCESS;
}

hardware_interface::return_type So100Hardware::read(const rclcpp::Time &, const rclcpp::Duration &)
{
  const CycleResult result = arm_->read();
  if (result == CycleResult::kFailed) {
    RCLCPP_ERROR(
      logger(), "%d bus cycles in a row failed, stopping: %s", arm_->consecutive_failures(),
      arm_->last_error().c_str());
    return hardware_interface::return_type::ERROR;
  }
  if (result == CycleResult::kSkipped && arm_->consecutive_failures() == 1) {
    RCLCPP_WARN(logger(), "bus read failed, keeping the last state: %s", arm_->last_error().c_str());
  }
  publish_states();
  return hardware_interface::return_type::OK;
}

hardware_interface::return_type So100Hardware::write(const rclcpp::Time &, const rclcpp::Duration &)
{
  for (std::size_t i = 0; i < command_interfaces_.size(); ++i) {
    arm_->commands()[i] = get_command(command_interfaces_[i]);
  }
  if (arm_->write() == CycleResult::kFailed) {
    RCLCPP_ERROR(logger(), "bus write failed, stopping: %s", arm_->last_error().c_str());
    return hardware_interface::return_type::ERROR;
  }
  return hardware_interface::return_type::OK;
}

}  // namespace so100_driver

PLUGINLIB_EXPORT_CLASS(so100_driver::So100Hardware, hardware_interface::SystemInterface)
