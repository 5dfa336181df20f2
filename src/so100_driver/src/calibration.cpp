#include "so100_driver/calibration.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "so100_driver/json.hpp"
#include "so100_driver/protocol.hpp"

namespace so100_driver
{

const std::vector<std::string> kSo100JointNames = {
  "shoulder_pan", "shoulder_lift", "elbow_flex", "wrist_flex", "wrist_roll", "gripper"};

namespace
{
constexpr double kRadiansPerTick = 2.0 * M_PI / kTicksPerTurn;
constexpr int kMaxHomingOffset = (1 << sign_bit::kHomingOffset) - 1;
}  // namespace

void JointCalibration::validate() const
{
  const std::string who = "joint '" + name + "' (servo " + std::to_string(id) + ")";
  if (id < 0 || id > 253) {
    throw std::invalid_argument(who + ": id must be 0..253");
  }
  if (drive_mode != 0 && drive_mode != 1) {
    throw std::invalid_argument(who + ": drive_mode must be 0 or 1, got " + std::to_string(drive_mode));
  }
  if (std::abs(homing_offset) > kMaxHomingOffset) {
    throw std::invalid_argument(
            who + ": homing_offset " + std::to_string(homing_offset) + " outside +-" +
            std::to_string(kMaxHomingOffset));
  }
  if (range_min < 0 || range_max >= kTicksPerTurn || range_min >= range_max) {
    throw std::invalid_argument(
            who + ": range [" + std::to_string(range_min) + ", " + std::to_string(range_max) +
            "] must satisfy 0 <= range_min < range_max <= 4095");
  }
}

double JointCalibration::ticks_to_radians(double ticks) const
{
  const double sign = drive_mode ? -1.0 : 1.0;
  return sign * (ticks - zero_tick()) * kRadiansPerTick;
}

int JointCalibration::radians_to_ticks(double radians) const
{
  if (!std::isfinite(radians)) {
    throw std::invalid_argument("joint '" + name + "': position command is not a finite number");
  }
  const double sign = drive_mode ? -1.0 : 1.0;
  const double ticks = std::round(zero_tick() + sign * radians / kRadiansPerTick);
  return static_cast<int>(std::clamp(ticks, static_cast<double>(range_min), static_cast<double>(range_max)));
}

double JointCalibration::speed_to_radians(int ticks_per_second) const
{
  return (drive_mode ? -1.0 : 1.0) * ticks_per_second * kRadiansPerTick;
}

double JointCalibration::lower_limit() const
{
  return std::min(ticks_to_radians(range_min), ticks_to_radians(range_max));
}

double JointCalibration::upper_limit() const
{
  return std::max(ticks_to_radians(range_min), ticks_to_radians(range_max));
}

std::vector<JointCalibration> parse_lerobot_calibration(const std::string & text, const std::string & source)
{
  json::Value root;
  try {
    root = json::parse(text);
  } catch (const json::ParseError & error) {
    throw std::invalid_argument(source + ": " + error.what());
  }
  if (!root.is_object()) {
    throw std::invalid_argument(source + ": expected an object of motor name -> calibration");
  }
  std::vector<JointCalibration> joints;
  std::set<int> ids;
  for (const auto & [name, entry] : root.as_object()) {
    if (!entry.is_object()) {
      throw std::invalid_argument(source + ": motor '" + name + "' is not an object");
    }
    const auto & fields = entry.as_object();
    const auto integer = [&](const char * field) {
        const auto it = fields.find(field);
        if (it == fields.end()) {
          throw std::invalid_argument(source + ": motor '" + name + "' has no '" + field + "'");
        }
        if (!it->second.is_number() || std::nearbyint(it->second.as_number()) != it->second.as_number() ||
          std::abs(it->second.as_number()) > 1e6)
        {
          throw std::invalid_argument(
                  source + ": motor '" + name + "': '" + field + "' must be an integer");
        }
        return static_cast<int>(it->second.as_number());
      };
    JointCalibration joint;
    joint.name = name;
    joint.id = integer("id");
    joint.drive_mode = integer("drive_mode");
    joint.homing_offset = integer("homing_offset");
    joint.range_min = integer("range_min");
    joint.range_max = integer("range_max");
    try {
      joint.validate();
    } catch (const std::invalid_argument & error) {
      throw std::invalid_argument(source + ": " + error.what());
    }
    if (!ids.insert(joint.id).second) {
      throw std::invalid_argument(source + ": servo id " + std::to_string(joint.id) + " is used twice");
    }
    joints.push_back(joint);
  }
  if (joints.empty()) {
    throw std::invalid_argument(source + ": no motors");
  }
  std::sort(joints.begin(), joints.end(), [](const auto & a, const auto & b) {return a.id < b.id;});
  return joints;
}

std::vector<JointCalibration> load_lerobot_calibration(const std::string & path)
{
  std::ifstream file(path);
  if (!file) {
    throw std::invalid_argument("cannot read calibration file " + path);
  }
  std::ostringstream text;
  text << file.rdbuf();
  return parse_lerobot_calibration(text.str(), path);
}

std::vector<JointCalibration> default_so100_calibration()
{
  std::vector<JointCalibration> joints;
  for (std::size_t i = 0; i < kSo100JointNames.size(); ++i) {
    JointCalibration joint;
    joint.name = kSo100JointNames[i];
    joint.id = static_cast<int>(i) + 1;
    joints.push_back(joint);
  }
  return joints;
}

}  // namespace so100_driver
