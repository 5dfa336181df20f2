// Joint calibration and units: STS3215 ticks <-> radians, joint limits, and import of LeRobot
// SO-100 calibration files. LeRobot's own units (degrees, -100..100, 0..100) are converted on the
// policy side, from and to these radians: smolvla.joint_units.
#ifndef SO100_DRIVER__CALIBRATION_HPP_
#define SO100_DRIVER__CALIBRATION_HPP_

#include <cstdint>
#include <string>
#include <vector>

namespace so100_driver
{

/// The SO-100 / SO-101 joints in servo id order (ids 1..6).
extern const std::vector<std::string> kSo100JointNames;

/// Calibration of one joint as LeRobot stores it. Ticks are present-position ticks, i.e. after
/// the servo subtracted `homing_offset` (which LeRobot writes to the servo's EEPROM).
struct JointCalibration
{
  std::string name;
  int id = 0;
  int drive_mode = 0;      ///< 0: ticks grow with the joint angle, 1: inverted
  int homing_offset = 0;   ///< written to register 31 (sign-magnitude, sign bit 11)
  int range_min = 0;       ///< lowest reachable tick
  int range_max = 4095;    ///< highest reachable tick

  /// Throws std::invalid_argument naming the joint if the values cannot describe an STS3215.
  void validate() const;

  /// The tick that maps to 0 rad: the middle of the calibrated range, the zero LeRobot's
  /// degree unit uses too.
  double zero_tick() const {return 0.5 * (range_min + range_max);}
  /// rad = sign * (ticks - zero) * 2 pi / 4096.
  double ticks_to_radians(double ticks) const;
  /// Inverse of ticks_to_radians, rounded and clamped into [range_min, range_max]; throws
  /// std::invalid_argument for NaN or infinity.
  int radians_to_ticks(double radians) const;
  /// Signed ticks per second (decoded present speed) to rad/s.
  double speed_to_radians(int ticks_per_second) const;
  /// Joint limits in radians (lower < upper whatever the drive mode).
  double lower_limit() const;
  double upper_limit() const;
};

/// Parse a LeRobot calibration file's text: an object of motor name -> {id, drive_mode,
/// homing_offset, range_min, range_max}. Returns the entries sorted by id. Throws
/// std::invalid_argument naming the file (`source`), motor and field on any problem.
std::vector<JointCalibration> parse_lerobot_calibration(
  const std::string & text, const std::string & source = "calibration");

/// Read and parse a LeRobot calibration file.
std::vector<JointCalibration> load_lerobot_calibration(const std::string & path);

/// Calibration for the six SO-100 joints (ids 1..6) with the full tick range and no offset:
/// what an uncalibrated arm (or the emulator) has.
std::vector<JointCalibration> default_so100_calibration();

}  // namespace so100_driver

#endif  // SO100_DRIVER__CALIBRATION_HPP_
