#include "so100_driver/so100_arm.hpp"

#include <cmath>
#include <limits>
#include <set>
#include <stdexcept>
#include <system_error>
#include <utility>

namespace so100_driver
{

void ArmConfig::validate() const
{
  if (port.empty()) {
    throw std::invalid_argument("SO-100 arm: no serial port given");
  }
  if (joints.empty()) {
    throw std::invalid_argument("SO-100 arm: no joints");
  }
  std::set<int> seen_ids;
  std::set<std::string> seen_names;
  for (const auto & joint : joints) {
    joint.validate();
    if (joint.id < 1 || joint.id > 253) {
      throw std::invalid_argument("joint '" + joint.name + "': servo id must be 1..253");
    }
    if (!seen_ids.insert(joint.id).second) {
      throw std::invalid_argument("servo id " + std::to_string(joint.id) + " is used by two joints");
    }
    if (!seen_names.insert(joint.name).second) {
      throw std::invalid_argument("joint '" + joint.name + "' is listed twice");
    }
  }
  if (!gripper_joint.empty() && !seen_names.count(gripper_joint)) {
    throw std::invalid_argument("gripper joint '" + gripper_joint + "' is not one of the joints");
  }
  if (max_consecutive_failures < 1 || slow_state_period < 1 || range_tolerance < 0) {
    throw std::invalid_argument(
            "max_consecutive_failures and slow_state_period must be >= 1, range_tolerance >= 0");
  }
}

So100Arm::So100Arm(ArmConfig config)
: config_(std::move(config))
{
  config_.validate();
  states_.resize(config_.joints.size());
  commands_.assign(config_.joints.size(), std::numeric_limits<double>::quiet_NaN());
  present_ticks_.assign(config_.joints.size(), 0);
}

So100Arm::~So100Arm() = default;

const StsBus & So100Arm::bus() const
{
  if (!bus_) {
    throw std::logic_error("SO-100 arm is not configured");
  }
  return *bus_;
}

StsBus & So100Arm::require_bus()
{
  if (!bus_) {
    throw std::logic_error("SO-100 arm is not configured");
  }
  return *bus_;
}

std::vector<std::uint8_t> So100Arm::ids() const
{
  std::vector<std::uint8_t> out;
  for (const auto & joint : config_.joints) {
    out.push_back(static_cast<std::uint8_t>(joint.id));
  }
  return out;
}

std::string So100Arm::joint_of(std::uint8_t id) const
{
  for (const auto & joint : config_.joints) {
    if (joint.id == id) {
      return joint.name;
    }
  }
  return "?";
}

void So100Arm::rethrow_with_joint(const BusError & error) const
{
  throw BusError(
          error.servo_id(), error.fault(), error.status(),
          "joint '" + joint_of(error.servo_id()) + "': " + error.what());
}

void So100Arm::configure()
{
  if (bus_) {
    return;
  }
  bus_ = std::make_unique<StsBus>(std::make_unique<SerialPort>(config_.port, config_.baud), config_.bus);
  try {
    for (const auto & joint : config_.joints) {
      const auto id = static_cast<std::uint8_t>(joint.id);
      bus_->ping(id);
      const std::uint16_t model = bus_->read_u16(id, reg::kModelNumber);
      if (model != kSts3215ModelNumber) {
        throw std::runtime_error(
                "joint '" + joint.name + "': servo " + std::to_string(joint.id) + " reports model number " +
                std::to_string(model) + ", expected " + std::to_string(kSts3215ModelNumber) + " (STS3215)");
      }
    }
    for (std::size_t i = 0; i < config_.joints.size(); ++i) {
      const auto & joint = config_.joints[i];
      write_eeprom(i, reg::kOperatingMode, {0});  // position mode
      if (config_.write_calibration) {
        Bytes offset;
        put_le16(offset, encode_sign_magnitude(joint.homing_offset, sign_bit::kHomingOffset));
        write_eeprom(i, reg::kHomingOffset, offset);
        Bytes limits;
        put_le16(limits, static_cast<std::uint16_t>(joint.range_min));
        put_le16(limits, static_cast<std::uint16_t>(joint.range_max));
        write_eeprom(i, reg::kMinAngleLimit, limits);
      }
      if (joint.name == config_.gripper_joint) {
        Bytes torque;
        put_le16(torque, config_.gripper.max_torque);
        write_eeprom(i, reg::kMaxTorqueLimit, torque);
        Bytes current;
        put_le16(current, config_.gripper.protection_current);
        write_eeprom(i, reg::kProtectionCurrent, current);
        write_eeprom(i, reg::kOverloadTorque, {config_.gripper.overload_torque});
      }
    }
    read_positions_and_speeds();
    read_slow_states();
  } catch (const BusError & error) {
    bus_.reset();
    rethrow_with_joint(error);
  } catch (...) {
    bus_.reset();
    throw;
  }
}

void So100Arm::write_eeprom(std::size_t joint_index, std::uint8_t address, const Bytes & data)
{
  const auto & joint = config_.joints[joint_index];
  const auto id = static_cast<std::uint8_t>(joint.id);
  const auto length = static_cast<std::uint8_t>(data.size());
  if (bus_->read(id, address, length) == data) {
    return;  // EEPROM wears out: only write what differs
  }
  bus_->write_u8(id, reg::kLock, 0);
  try {
    bus_->write(id, address, data);
  } catch (...) {
    bus_->write_u8(id, reg::kLock, 1);
    throw;
  }
  bus_->write_u8(id, reg::kLock, 1);
  // A servo acknowledges EEPROM writes it refused (lock still set): only a read-back tells.
  if (bus_->read(id, address, length) != data) {
    throw std::runtime_error(
            "joint '" + joint.name + "': servo " + std::to_string(joint.id) + " refused the EEPROM write at address " +
            std::to_string(address) + " (value unchanged after unlocking; is the EEPROM lock stuck?)");
  }
}

std::vector<int> So100Arm::read_positions_and_speeds()
{
  const auto replies = bus_->sync_read(ids(), reg::kPresentPosition, 4);
  for (std::size_t i = 0; i < replies.size(); ++i) {
    const auto & joint = config_.joints[i];
    present_ticks_[i] = le16(replies[i].data());
    states_[i].position = joint.ticks_to_radians(present_ticks_[i]);
    states_[i].velocity = joint.speed_to_radians(decode_sign_magnitude(le16(replies[i].data() + 2), sign_bit::kSpeed));
  }
  return present_ticks_;
}

void So100Arm::read_slow_states()
{
  // Load (2 bytes), voltage and temperature are adjacent: one SYNC_READ of 4 bytes at 60.
  const auto replies = bus_->sync_read(ids(), reg::kPresentLoad, 4);
  for (std::size_t i = 0; i < replies.size(); ++i) {
    const double sign = config_.joints[i].drive_mode ? -1.0 : 1.0;
    states_[i].load = sign * decode_sign_magnitude(le16(replies[i].data()), sign_bit::kLoad) / 10.0;
    states_[i].voltage = replies[i][2] / 10.0;
    states_[i].temperature = replies[i][3];
  }
}

void So100Arm::set_torque(std::uint8_t value)
{
  // Acknowledged writes, one per servo: torque must be known to be on (or off) everywhere.
  for (const auto id : ids()) {
    bus_->write_u8(id, reg::kTorqueEnable, value);
  }
}

void So100Arm::activate()
{
  StsBus & bus = require_bus();
  try {
    const std::vector<int> ticks = read_positions_and_speeds();
    for (std::size_t i = 0; i < ticks.size(); ++i) {
      const auto & joint = config_.joints[i];
      if (ticks[i] < joint.range_min - config_.range_tolerance || ticks[i] > joint.range_max + config_.range_tolerance) {
        throw std::runtime_error(
                "joint '" + joint.name + "' is at tick " + std::to_string(ticks[i]) + ", outside its calibrated range [" +
                std::to_string(joint.range_min) + ", " + std::to_string(joint.range_max) +
                "]: torque would make it jump to the range end. Move it into range by hand (torque is off) "
                "or recalibrate");
      }
    }
    for (std::size_t i = 0; i < commands_.size(); ++i) {
      commands_[i] = states_[i].position;
    }
    // Goals first, torque second: a servo switched on with a stale goal would jump to it.
    std::vector<std::pair<std::uint8_t, Bytes>> goals;
    for (std::size_t i = 0; i < ticks.size(); ++i) {
      Bytes data;
      put_le16(data, encode_sign_magnitude(ticks[i], sign_bit::kGoalPosition));
      goals.emplace_back(static_cast<std::uint8_t>(config_.joints[i].id), data);
    }
    bus.sync_write(reg::kGoalPosition, 2, goals);
    // From here some servos may hold torque even if a later one fails: deactivate() must follow.
    torque_enabled_ = true;
    set_torque(1);
    consecutive_failures_ = 0;
  } catch (const std::exception & error) {
    if (torque_enabled_) {
      try {
        deactivate();  // do not leave part of the arm stiff
      } catch (const std::exception &) {
        // the original failure is the one to report
      }
    }
    const auto * bus_error = dynamic_cast<const BusError *>(&error);
    if (bus_error != nullptr) {
      rethrow_with_joint(*bus_error);
    }
    throw;
  }
}

void So100Arm::deactivate()
{
  StsBus & bus = require_bus();
  std::string failures;
  for (const auto & joint : config_.joints) {
    try {
      bus.write_u8(static_cast<std::uint8_t>(joint.id), reg::kTorqueEnable, 0);
    } catch (const std::exception & error) {
      failures += (failures.empty() ? "" : "; ") + std::string("joint '") + joint.name + "': " + error.what();
    }
  }
  torque_enabled_ = false;
  if (!failures.empty()) {
    throw std::runtime_error("could not disable torque: " + failures);
  }
}

void So100Arm::disconnect()
{
  bus_.reset();
  torque_enabled_ = false;
}

CycleResult So100Arm::count_failure(const std::string & message)
{
  last_error_ = message;
  ++consecutive_failures_;
  return consecutive_failures_ >= config_.max_consecutive_failures ? CycleResult::kFailed : CycleResult::kSkipped;
}

CycleResult So100Arm::read()
{
  require_bus();
  try {
    read_positions_and_speeds();
    if (read_cycles_++ % config_.slow_state_period == 0) {
      read_slow_states();
    }
  } catch (const BusError & error) {
    return count_failure("joint '" + joint_of(error.servo_id()) + "': " + error.what());
  } catch (const std::system_error & error) {
    return count_failure(error.what());  // the adapter went away (unplugged, EIO)
  }
  consecutive_failures_ = 0;
  return CycleResult::kOk;
}

CycleResult So100Arm::write()
{
  StsBus & bus = require_bus();
  if (!torque_enabled_) {
    return CycleResult::kOk;  // nothing to command while the servos are limp
  }
  std::vector<std::pair<std::uint8_t, Bytes>> goals;
  goals.reserve(commands_.size());
  for (std::size_t i = 0; i < commands_.size(); ++i) {
    const auto & joint = config_.joints[i];
    const int ticks = std::isfinite(commands_[i]) ? joint.radians_to_ticks(commands_[i]) : present_ticks_[i];
    Bytes data;
    put_le16(data, encode_sign_magnitude(ticks, sign_bit::kGoalPosition));
    goals.emplace_back(static_cast<std::uint8_t>(joint.id), data);
  }
  try {
    bus.sync_write(reg::kGoalPosition, 2, goals);
  } catch (const std::system_error & error) {
    return count_failure(error.what());
  }
  return CycleResult::kOk;
}

}  // namespace so100_driver
