// Parameters of the <ros2_control> tag -> ArmConfig: what the plugin's on_init relies on.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "so100_driver/hardware_config.hpp"

namespace sd = so100_driver;

namespace
{
std::vector<sd::JointDescription> six_joints(bool with_ids)
{
  std::vector<sd::JointDescription> joints;
  for (std::size_t i = 0; i < sd::kSo100JointNames.size(); ++i) {
    sd::JointDescription joint;
    joint.name = sd::kSo100JointNames[i];
    if (with_ids) {
      joint.parameters["id"] = std::to_string(i + 1);
    }
    joint.command_interfaces = {"position"};
    joint.state_interfaces = {"position", "velocity", "load", "temperature", "voltage"};
    joints.push_back(joint);
  }
  return joints;
}

std::string error_of(const sd::ParameterMap & hardware, const std::vector<sd::JointDescription> & joints)
{
  try {
    sd::make_arm_config(hardware, joints);
  } catch (const std::invalid_argument & error) {
    return error.what();
  }
  return "";
}
}  // namespace

TEST(HardwareConfig, DefaultsWithIdsFromTheUrdf)
{
  const auto config = sd::make_arm_config({{"port", "/dev/ttyACM0"}}, six_joints(true));
  EXPECT_EQ(config.port, "/dev/ttyACM0");
  EXPECT_EQ(config.baud, 1000000);
  EXPECT_EQ(config.bus.reply_timeout.count(), 20000);
  EXPECT_EQ(config.bus.retries, 2);
  EXPECT_EQ(config.max_consecutive_failures, 5);
  EXPECT_EQ(config.gripper_joint, "gripper");
  EXPECT_EQ(config.gripper.max_torque, 500);
  EXPECT_EQ(config.range_tolerance, 50);
  EXPECT_FALSE(config.write_calibration);  // nothing to write without a calibration file
  ASSERT_EQ(config.joints.size(), 6u);
  EXPECT_EQ(config.joints[4].name, "wrist_roll");
  EXPECT_EQ(config.joints[4].id, 5);
}

TEST(HardwareConfig, CalibrationFileSuppliesIdsAndRanges)
{
  const std::string path = ::testing::TempDir() + "so100_hw_calibration.json";
  {
    std::ofstream file(path);
    file << "{";
    for (std::size_t i = 0; i < sd::kSo100JointNames.size(); ++i) {
      file << (i ? "," : "") << "\"" << sd::kSo100JointNames[i] << "\": {\"id\": " << i + 1
           << ", \"drive_mode\": 0, \"homing_offset\": -" << 100 * i << ", \"range_min\": 1000, \"range_max\": 3000}";
    }
    file << "}";
  }
  const auto config = sd::make_arm_config(
    {{"port", "/dev/ttyACM0"}, {"calibration_file", path}, {"reply_timeout_ms", "5"}, {"retries", "0"},
      {"gripper_max_torque", "400"}, {"write_calibration", "TRUE"}},
    six_joints(false));
  EXPECT_TRUE(config.write_calibration);
  EXPECT_EQ(config.bus.reply_timeout.count(), 5000);
  EXPECT_EQ(config.bus.retries, 0);
  EXPECT_EQ(config.gripper.max_torque, 400);
  EXPECT_EQ(config.joints[3].homing_offset, -300);
  EXPECT_EQ(config.joints[3].range_min, 1000);

  auto joints = six_joints(true);
  joints[2].parameters["id"] = "4";
  EXPECT_NE(error_of({{"port", "p"}, {"calibration_file", path}}, joints).find("'elbow_flex': id 4 in the URDF but 3"),
    std::string::npos);
  joints = six_joints(false);
  joints[0].name = "base_yaw";
  EXPECT_NE(error_of({{"port", "p"}, {"calibration_file", path}}, joints).find("'base_yaw' is not in calibration file"),
    std::string::npos);
  std::remove(path.c_str());
}

TEST(HardwareConfig, RejectsBadParametersAndInterfaces)
{
  const auto joints = six_joints(true);
  EXPECT_NE(error_of({}, joints).find("'port'"), std::string::npos);
  EXPECT_NE(error_of({{"port", "p"}, {"retries", "many"}}, joints).find("'retries' must be an integer"),
    std::string::npos);
  EXPECT_NE(error_of({{"port", "p"}, {"reply_timeout_ms", "0"}}, joints).find("'reply_timeout_ms'"), std::string::npos);
  EXPECT_NE(error_of({{"port", "p"}, {"write_calibration", "yes"}}, joints).find("true or false"), std::string::npos);
  EXPECT_NE(error_of({{"port", "p"}, {"gripper_joint", "claw"}}, joints).find("gripper joint 'claw'"),
    std::string::npos);
  EXPECT_NE(error_of({{"port", "p"}, {"calibration_file", "/nonexistent.json"}}, joints).find("/nonexistent.json"),
    std::string::npos);

  auto bad = joints;
  bad[1].command_interfaces = {"velocity"};
  EXPECT_NE(error_of({{"port", "p"}}, bad).find("'shoulder_lift': needs exactly one command interface"),
    std::string::npos);
  bad = joints;
  bad[2].state_interfaces = {"position"};
  EXPECT_NE(error_of({{"port", "p"}}, bad).find("'elbow_flex': needs the 'position' and 'velocity'"),
    std::string::npos);
  bad = joints;
  bad[3].state_interfaces.push_back("effort");
  EXPECT_NE(error_of({{"port", "p"}}, bad).find("unknown state interface 'effort'"), std::string::npos);
  bad = joints;
  bad[5].parameters.erase("id");
  EXPECT_NE(error_of({{"port", "p"}}, bad).find("'gripper': parameter 'id' required"), std::string::npos);
  bad = joints;
  bad[5].parameters["id"] = "1";
  EXPECT_NE(error_of({{"port", "p"}}, bad).find("servo id 1 is used by two joints"), std::string::npos);
}

TEST(HardwareConfig, ArmWithoutGripperGetsNoGripperLimits)
{
  auto joints = six_joints(true);
  joints.pop_back();
  EXPECT_EQ(sd::make_arm_config({{"port", "p"}}, joints).gripper_joint, "");
}

TEST(HardwareConfig, StateValuesByInterfaceName)
{
  sd::JointState state{1.0, 2.0, 3.0, 4.0, 5.0};
  EXPECT_EQ(sd::state_value(state, "position"), 1.0);
  EXPECT_EQ(sd::state_value(state, "velocity"), 2.0);
  EXPECT_EQ(sd::state_value(state, "load"), 3.0);
  EXPECT_EQ(sd::state_value(state, "temperature"), 4.0);
  EXPECT_EQ(sd::state_value(state, "voltage"), 5.0);
  EXPECT_TRUE(std::isnan(sd::state_value(state, "effort")));
}
