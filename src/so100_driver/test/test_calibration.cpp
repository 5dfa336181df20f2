// JSON reader, LeRobot calibration import, and the tick/radian/LeRobot unit conversions.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "so100_driver/calibration.hpp"
#include "so100_driver/json.hpp"

namespace sd = so100_driver;

namespace
{
// Shape of ~/.cache/huggingface/lerobot/calibration/robots/so100_follower/<id>.json.
const char * kLeRobotFile = R"({
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1470, "range_min": 758, "range_max": 3292},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 153, "range_min": 816, "range_max": 3333},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": 2047, "range_min": 901, "range_max": 3101},
    "wrist_flex": {"id": 4, "drive_mode": 0, "homing_offset": -1033, "range_min": 886, "range_max": 3268},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": -2047, "range_min": 200, "range_max": 3900},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1094, "range_min": 2023, "range_max": 3311}
})";

std::string parse_error(const std::string & text)
{
  try {
    sd::json::parse(text);
  } catch (const sd::json::ParseError & error) {
    return error.what();
  }
  return "";
}

std::string import_error(const std::string & text)
{
  try {
    sd::parse_lerobot_calibration(text, "calib.json");
  } catch (const std::invalid_argument & error) {
    return error.what();
  }
  return "";
}
}  // namespace

TEST(Json, ParsesValuesOfEveryKind)
{
  const auto value = sd::json::parse(R"( {"a": [1, -2.5e2, true, false, null], "b": {"s": "x\"\\\u00e9\n"}} )");
  const auto & object = value.as_object();
  const auto & array = std::get<sd::json::Array>(object.at("a").data);
  ASSERT_EQ(array.size(), 5u);
  EXPECT_EQ(array[0].as_number(), 1.0);
  EXPECT_EQ(array[1].as_number(), -250.0);
  EXPECT_TRUE(std::get<bool>(array[2].data));
  EXPECT_FALSE(std::get<bool>(array[3].data));
  EXPECT_TRUE(std::holds_alternative<std::nullptr_t>(array[4].data));
  EXPECT_EQ(std::get<std::string>(object.at("b").as_object().at("s").data), "x\"\\\xC3\xA9\n");
}

TEST(Json, RejectsMalformedDocumentsWithTheOffset)
{
  EXPECT_NE(parse_error("{\"a\": 1,}").find("at byte 8"), std::string::npos);
  EXPECT_NE(parse_error("[1, 2").find("expected ']'"), std::string::npos);
  EXPECT_NE(parse_error("\"abc").find("unterminated string"), std::string::npos);
  EXPECT_NE(parse_error("{\"a\": 1, \"a\": 2}").find("duplicate key"), std::string::npos);
  EXPECT_NE(parse_error("01").find("trailing characters"), std::string::npos);
  EXPECT_NE(parse_error("-").find("invalid number"), std::string::npos);
  EXPECT_NE(parse_error("tru").find("invalid literal"), std::string::npos);
  EXPECT_NE(parse_error(std::string(100, '[')).find("nesting"), std::string::npos);
  EXPECT_NE(parse_error("").find("unexpected end"), std::string::npos);
}

TEST(Calibration, ImportsLeRobotFileSortedById)
{
  const auto joints = sd::parse_lerobot_calibration(kLeRobotFile);
  ASSERT_EQ(joints.size(), 6u);
  for (std::size_t i = 0; i < joints.size(); ++i) {
    EXPECT_EQ(joints[i].id, static_cast<int>(i) + 1);
    EXPECT_EQ(joints[i].name, sd::kSo100JointNames[i]);
  }
  EXPECT_EQ(joints[0].homing_offset, -1470);
  EXPECT_EQ(joints[0].range_min, 758);
  EXPECT_EQ(joints[0].range_max, 3292);
  EXPECT_EQ(joints[5].homing_offset, 1094);
}

TEST(Calibration, ImportErrorsNameFileMotorAndField)
{
  const std::string missing = import_error(R"({"gripper": {"id": 6, "drive_mode": 0, "range_min": 1, "range_max": 9}})");
  EXPECT_NE(missing.find("calib.json"), std::string::npos);
  EXPECT_NE(missing.find("'gripper' has no 'homing_offset'"), std::string::npos);
  EXPECT_NE(
    import_error(R"({"g": {"id": 6, "drive_mode": 0, "homing_offset": 1.5, "range_min": 1, "range_max": 9}})")
    .find("'homing_offset' must be an integer"), std::string::npos);
  EXPECT_NE(
    import_error(R"({"g": {"id": 6, "drive_mode": 0, "homing_offset": 0, "range_min": 900, "range_max": 100}})")
    .find("range [900, 100]"), std::string::npos);
  EXPECT_NE(
    import_error(R"({"g": {"id": 6, "drive_mode": 2, "homing_offset": 0, "range_min": 1, "range_max": 9}})")
    .find("drive_mode must be 0 or 1"), std::string::npos);
  EXPECT_NE(
    import_error(R"({"g": {"id": 6, "drive_mode": 0, "homing_offset": 2048, "range_min": 1, "range_max": 9}})")
    .find("homing_offset 2048 outside +-2047"), std::string::npos);
  EXPECT_NE(
    import_error(R"({"a": {"id": 6, "drive_mode": 0, "homing_offset": 0, "range_min": 1, "range_max": 9},
                     "b": {"id": 6, "drive_mode": 0, "homing_offset": 0, "range_min": 1, "range_max": 9}})")
    .find("servo id 6 is used twice"), std::string::npos);
  EXPECT_NE(import_error("[1, 2]").find("expected an object"), std::string::npos);
  EXPECT_NE(import_error("{}").find("no motors"), std::string::npos);
  EXPECT_NE(import_error("{").find("JSON error"), std::string::npos);
}

TEST(Calibration, LoadsFromFileAndReportsMissingFile)
{
  const std::string path = ::testing::TempDir() + "so100_calibration_test.json";
  {
    std::ofstream file(path);
    file << kLeRobotFile;
  }
  EXPECT_EQ(sd::load_lerobot_calibration(path).size(), 6u);
  std::remove(path.c_str());
  EXPECT_THROW(sd::load_lerobot_calibration(path), std::invalid_argument);
}

TEST(Calibration, RadiansAreZeroAtTheRangeMiddleAndQuarterTurnIs1024Ticks)
{
  sd::JointCalibration joint;
  joint.range_min = 1000;
  joint.range_max = 3000;
  EXPECT_DOUBLE_EQ(joint.ticks_to_radians(2000), 0.0);
  EXPECT_DOUBLE_EQ(joint.ticks_to_radians(3024), M_PI / 2);
  EXPECT_DOUBLE_EQ(joint.ticks_to_radians(976), -M_PI / 2);
  EXPECT_EQ(joint.radians_to_ticks(M_PI / 2), 3000);   // clamped to range_max
  EXPECT_EQ(joint.radians_to_ticks(-M_PI / 4), 1488);
  EXPECT_EQ(joint.radians_to_ticks(-10.0), 1000);      // clamped to range_min
  EXPECT_EQ(joint.radians_to_ticks(1e300), 3000);
  EXPECT_THROW(joint.radians_to_ticks(std::nan("")), std::invalid_argument);
  EXPECT_THROW(joint.radians_to_ticks(-INFINITY), std::invalid_argument);
  EXPECT_DOUBLE_EQ(joint.speed_to_radians(-4096), -2 * M_PI);
  EXPECT_DOUBLE_EQ(joint.lower_limit(), -1000 * 2 * M_PI / 4096);
  EXPECT_DOUBLE_EQ(joint.upper_limit(), 1000 * 2 * M_PI / 4096);
  for (int ticks = joint.range_min; ticks <= joint.range_max; ticks += 7) {
    ASSERT_EQ(joint.radians_to_ticks(joint.ticks_to_radians(ticks)), ticks);
  }
}

TEST(Calibration, InvertedDriveModeFlipsSignsButNotLimitOrder)
{
  sd::JointCalibration joint;
  joint.drive_mode = 1;
  joint.range_min = 1000;
  joint.range_max = 3000;
  EXPECT_DOUBLE_EQ(joint.ticks_to_radians(3024), -M_PI / 2);
  EXPECT_EQ(joint.radians_to_ticks(M_PI / 4), 1488);
  EXPECT_DOUBLE_EQ(joint.speed_to_radians(1024), -M_PI / 2);
  EXPECT_LT(joint.lower_limit(), joint.upper_limit());
  EXPECT_DOUBLE_EQ(joint.upper_limit(), 1000 * 2 * M_PI / 4096);
}
