#include "so100_driver/hardware_config.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <limits>
#include <stdexcept>

namespace so100_driver
{

const std::vector<std::string> kOptionalStateInterfaces = {"load", "temperature", "voltage"};

namespace
{
const std::string * find(const ParameterMap & map, const std::string & key)
{
  const auto it = map.find(key);
  return it == map.end() ? nullptr : &it->second;
}

long integer_parameter(const ParameterMap & map, const std::string & key, long fallback, long lo, long hi)
{
  const std::string * text = find(map, key);
  if (text == nullptr) {
    return fallback;
  }
  char * end = nullptr;
  const long value = std::strtol(text->c_str(), &end, 10);
  if (text->empty() || *end != '\0' || value < lo || value > hi) {
    throw std::invalid_argument(
            "parameter '" + key + "' must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
            "], got '" + *text + "'");
  }
  return value;
}

bool bool_parameter(const ParameterMap & map, const std::string & key, bool fallback)
{
  const std::string * text = find(map, key);
  if (text == nullptr) {
    return fallback;
  }
  std::string lower = *text;
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) {return std::tolower(c);});
  if (lower == "true" || lower == "1") {
    return true;
  }
  if (lower == "false" || lower == "0") {
    return false;
  }
  throw std::invalid_argument("parameter '" + key + "' must be true or false, got '" + *text + "'");
}

bool contains(const std::vector<std::string> & names, const std::string & name)
{
  return std::find(names.begin(), names.end(), name) != names.end();
}
}  // namespace

ArmConfig make_arm_config(const ParameterMap & hardware, const std::vector<JointDescription> & joints)
{
  ArmConfig config;
  const std::string * port = find(hardware, "port");
  if (port == nullptr || port->empty()) {
    throw std::invalid_argument("hardware parameter 'port' (serial device of the bus adapter) is required");
  }
  config.port = *port;
  config.baud = static_cast<int>(integer_parameter(hardware, "baud", 1000000, 9600, 1000000));
  config.bus.reply_timeout = std::chrono::milliseconds(integer_parameter(hardware, "reply_timeout_ms", 20, 1, 1000));
  config.bus.retries = static_cast<int>(integer_parameter(hardware, "retries", 2, 0, 10));
  config.max_consecutive_failures =
    static_cast<int>(integer_parameter(hardware, "max_consecutive_failures", 5, 1, 1000));
  config.slow_state_period = static_cast<int>(integer_parameter(hardware, "slow_state_period", 10, 1, 10000));
  config.write_calibration = bool_parameter(hardware, "write_calibration", true);
  config.range_tolerance = static_cast<int>(integer_parameter(hardware, "range_tolerance_ticks", 50, 0, 4095));
  config.gripper.max_torque = static_cast<std::uint16_t>(integer_parameter(hardware, "gripper_max_torque", 500, 0, 1000));
  config.gripper.protection_current =
    static_cast<std::uint16_t>(integer_parameter(hardware, "gripper_protection_current", 250, 0, 2047));
  config.gripper.overload_torque =
    static_cast<std::uint8_t>(integer_parameter(hardware, "gripper_overload_torque", 25, 0, 100));

  std::vector<JointCalibration> calibration;
  const std::string * calibration_file = find(hardware, "calibration_file");
  if (calibration_file != nullptr && !calibration_file->empty()) {
    calibration = load_lerobot_calibration(*calibration_file);
  }
  for (const auto & joint : joints) {
    if (!contains(joint.command_interfaces, "position") || joint.command_interfaces.size() != 1) {
      throw std::invalid_argument("joint '" + joint.name + "': needs exactly one command interface, 'position'");
    }
    for (const auto & state : joint.state_interfaces) {
      if (state != "position" && state != "velocity" && !contains(kOptionalStateInterfaces, state)) {
        throw std::invalid_argument(
                "joint '" + joint.name + "': unknown state interface '" + state +
                "' (position, velocity, load, temperature, voltage)");
      }
    }
    if (!contains(joint.state_interfaces, "position") || !contains(joint.state_interfaces, "velocity")) {
      throw std::invalid_argument("joint '" + joint.name + "': needs the 'position' and 'velocity' state interfaces");
    }
    const long id = integer_parameter(joint.parameters, "id", -1, 1, 253);
    JointCalibration entry;
    if (!calibration.empty()) {
      const auto it = std::find_if(
        calibration.begin(), calibration.end(), [&](const auto & c) {return c.name == joint.name;});
      if (it == calibration.end()) {
        throw std::invalid_argument(
                "joint '" + joint.name + "' is not in calibration file " + *calibration_file);
      }
      entry = *it;
      if (id != -1 && id != entry.id) {
        throw std::invalid_argument(
                "joint '" + joint.name + "': id " + std::to_string(id) + " in the URDF but " +
                std::to_string(entry.id) + " in " + *calibration_file);
      }
    } else {
      if (id == -1) {
        throw std::invalid_argument("joint '" + joint.name + "': parameter 'id' required without a calibration_file");
      }
      entry.name = joint.name;
      entry.id = static_cast<int>(id);
      // Uncalibrated: keep whatever homing offset and limits the servos hold.
      config.write_calibration = false;
    }
    config.joints.push_back(entry);
  }
  // Default: protect the joint called "gripper" if there is one; a named gripper_joint must exist.
  const std::string * gripper = find(hardware, "gripper_joint");
  const bool has_gripper = std::any_of(
    config.joints.begin(), config.joints.end(), [](const auto & j) {return j.name == "gripper";});
  config.gripper_joint = gripper ? *gripper : (has_gripper ? "gripper" : "");
  config.validate();
  return config;
}

double state_value(const JointState & state, const std::string & interface)
{
  if (interface == "position") {
    return state.position;
  }
  if (interface == "velocity") {
    return state.velocity;
  }
  if (interface == "load") {
    return state.load;
  }
  if (interface == "temperature") {
    return state.temperature;
  }
  if (interface == "voltage") {
    return state.voltage;
  }
  return std::numeric_limits<double>::quiet_NaN();
}

}  // namespace so100_driver
