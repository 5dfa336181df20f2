// The SO-100 arm over one STS3215 bus, without ROS: the lifecycle (configure, activate,
// deactivate) and the control cycle (read, write) that the ros2_control plugin wraps.
#ifndef SO100_DRIVER__SO100_ARM_HPP_
#define SO100_DRIVER__SO100_ARM_HPP_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "so100_driver/calibration.hpp"
#include "so100_driver/sts_bus.hpp"

namespace so100_driver
{

/// Protection settings LeRobot writes to the SO-100 gripper so it does not overheat when it
/// squeezes an object.
struct GripperLimits
{
  std::uint16_t max_torque = 500;          ///< register 16, 0.1 % of stall torque
  std::uint16_t protection_current = 250;  ///< register 28
  std::uint8_t overload_torque = 25;       ///< register 36, % torque while overloaded
};

/// Everything the arm needs to run.
struct ArmConfig
{
  std::string port;                      ///< serial device of the bus adapter
  int baud = 1000000;
  std::vector<JointCalibration> joints;  ///< in command/state order; names, ids and calibration
  BusOptions bus;
  std::string gripper_joint = "gripper";  ///< joint that gets `gripper` limits; empty for none
  GripperLimits gripper;
  /// Write homing offset and position limits from the calibration to the servos' EEPROM when
  /// they differ (LeRobot does the same), so that present ticks are in the calibration's frame.
  bool write_calibration = true;
  /// Consecutive failed read/write cycles tolerated before the arm reports failure.
  int max_consecutive_failures = 5;
  /// Read load, voltage and temperature every N read cycles (position and speed every cycle).
  int slow_state_period = 10;
  /// How far (ticks) outside its calibrated range a joint may be at activation. The servo clamps its
  /// goal to the range, so a joint further out would jump to the range end when torque comes on.
  int range_tolerance = 50;

  /// Throws std::invalid_argument describing the first inconsistency.
  void validate() const;
};

/// Latest state of one joint.
struct JointState
{
  double position = 0.0;     ///< rad
  double velocity = 0.0;     ///< rad/s
  double load = 0.0;         ///< percent of maximum torque, signed
  double temperature = 0.0;  ///< deg C
  double voltage = 0.0;      ///< V
};

/// Outcome of one read or write cycle.
enum class CycleResult
{
  kOk,       ///< the bus exchange succeeded
  kSkipped,  ///< it failed, but fewer than max_consecutive_failures times in a row
  kFailed,   ///< max_consecutive_failures cycles in a row failed: stop the arm
};

/// One SO-100 arm. Methods throw std::runtime_error (BusError for bus faults) with messages that
/// name the joint and servo; read() and write() never throw bus faults, they count them.
class So100Arm
{
public:
  explicit So100Arm(ArmConfig config);
  ~So100Arm();

  /// Open the port, ping every servo, check the model number (777 = STS3215), write the
  /// calibration and the gripper limits where the EEPROM differs, then read the joint states.
  void configure();
  /// Read the positions, seed the commands and the servos' goals with them, then enable torque.
  /// Refuses (std::runtime_error naming the joint) if a joint is more than range_tolerance ticks
  /// outside its calibrated range.
  void activate();
  /// Disable torque on every servo (tries all of them even if one fails).
  void deactivate();
  /// Close the port.
  void disconnect();

  /// One SYNC_READ of position and speed, plus load/voltage/temperature every slow_state_period.
  CycleResult read();
  /// One SYNC_WRITE of the goal positions from commands() (NaN holds the joint where it is).
  CycleResult write();

  /// Position commands in rad, one per joint, in configuration order.
  std::vector<double> & commands() {return commands_;}
  const std::vector<JointState> & states() const {return states_;}
  const ArmConfig & config() const {return config_;}
  bool connected() const {return bus_ != nullptr;}
  bool torque_enabled() const {return torque_enabled_;}
  int consecutive_failures() const {return consecutive_failures_;}
  /// Message of the most recent bus failure ("" if none yet).
  const std::string & last_error() const {return last_error_;}
  const StsBus & bus() const;

private:
  StsBus & require_bus();
  std::vector<std::uint8_t> ids() const;
  std::string joint_of(std::uint8_t id) const;
  [[noreturn]] void rethrow_with_joint(const BusError & error) const;
  void write_eeprom(std::size_t joint, std::uint8_t address, const Bytes & data);
  std::vector<int> read_positions_and_speeds();
  void read_slow_states();
  void set_torque(std::uint8_t value);
  CycleResult count_failure(const std::string & message);

  ArmConfig config_;
  std::unique_ptr<StsBus> bus_;
  std::vector<JointState> states_;
  std::vector<double> commands_;
  std::vector<int> present_ticks_;
  bool torque_enabled_ = false;
  int consecutive_failures_ = 0;
  int read_cycles_ = 0;
  std::string last_error_;
};

}  // namespace so100_driver

#endif  // SO100_DRIVER__SO100_ARM_HPP_
