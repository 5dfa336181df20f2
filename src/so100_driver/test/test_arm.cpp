// The ROS-free SO-100 arm (what the ros2_control plugin wraps) against the emulated bus.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <string>
#include <thread>

#include "so100_driver/so100_arm.hpp"
#include "so100_driver/sts_emulator.hpp"

namespace sd = so100_driver;
using namespace std::chrono_literals;

namespace
{
const char * kCalibration = R"({
    "shoulder_pan": {"id": 1, "drive_mode": 0, "homing_offset": -1470, "range_min": 758, "range_max": 3292},
    "shoulder_lift": {"id": 2, "drive_mode": 0, "homing_offset": 153, "range_min": 816, "range_max": 3333},
    "elbow_flex": {"id": 3, "drive_mode": 0, "homing_offset": 0, "range_min": 901, "range_max": 3101},
    "wrist_flex": {"id": 4, "drive_mode": 1, "homing_offset": -1033, "range_min": 886, "range_max": 3268},
    "wrist_roll": {"id": 5, "drive_mode": 0, "homing_offset": -2047, "range_min": 200, "range_max": 3900},
    "gripper": {"id": 6, "drive_mode": 0, "homing_offset": 1094, "range_min": 2023, "range_max": 3311}
})";

class ArmTest : public ::testing::Test
{
protected:
  sd::ArmConfig config(std::chrono::microseconds timeout = 500ms, int retries = 2)
  {
    sd::ArmConfig c;
    c.port = emulator.device();
    c.joints = sd::parse_lerobot_calibration(kCalibration);
    c.bus.reply_timeout = timeout;
    c.bus.retries = retries;
    return c;
  }

  template<typename F>
  bool eventually(F done, std::chrono::milliseconds limit = 3000ms)
  {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      if (done()) {
        return true;
      }
      std::this_thread::sleep_for(5ms);
    }
    return done();
  }

  // Put every servo in the middle of its calibrated range (the emulator starts at raw 2048, which
  // the homing offsets of kCalibration move outside some ranges).
  void center(const sd::So100Arm & arm)
  {
    for (const auto & joint : arm.config().joints) {
      emulator.set_present_position(static_cast<std::uint8_t>(joint.id), static_cast<int>(joint.zero_tick()));
    }
  }

  std::size_t eeprom_writes() const
  {
    std::size_t n = 0;
    for (const auto & w : emulator.writes()) {
      n += w.address < sd::reg::kEepromEnd || w.address == sd::reg::kLock;
    }
    return n;
  }

  sd::StsEmulator emulator;
};

template<typename F>
std::string error_of(F action)
{
  try {
    action();
  } catch (const std::exception & error) {
    return error.what();
  }
  return "";
}
}  // namespace

TEST_F(ArmTest, ConfigureWritesCalibrationAndGripperLimitsThenRelocks)
{
  sd::So100Arm arm(config());
  arm.configure();
  EXPECT_EQ(emulator.register_value(1, sd::reg::kHomingOffset, 2), 0x800 | 1470);  // sign bit 11
  EXPECT_EQ(emulator.register_value(2, sd::reg::kHomingOffset, 2), 153);
  EXPECT_EQ(emulator.register_value(5, sd::reg::kHomingOffset, 2), 0x800 | 2047);
  EXPECT_EQ(emulator.register_value(1, sd::reg::kMinAngleLimit, 2), 758);
  EXPECT_EQ(emulator.register_value(1, sd::reg::kMaxAngleLimit, 2), 3292);
  EXPECT_EQ(emulator.register_value(6, sd::reg::kMaxTorqueLimit, 2), 500);
  EXPECT_EQ(emulator.register_value(6, sd::reg::kProtectionCurrent, 2), 250);
  EXPECT_EQ(emulator.register_value(6, sd::reg::kOverloadTorque, 1), 25);
  EXPECT_EQ(emulator.register_value(5, sd::reg::kMaxTorqueLimit, 2), 1000);  // arm joints keep full torque
  for (std::uint8_t id = 1; id <= 6; ++id) {
    EXPECT_EQ(emulator.register_value(id, sd::reg::kLock, 1), 1) << "servo " << int(id);
    EXPECT_EQ(emulator.register_value(id, sd::reg::kTorqueEnable, 1), 0) << "configure must not move the arm";
  }
  // Raw 2048 with offset -1470 reads 3518 on shoulder_pan: 1493 ticks above its range middle.
  EXPECT_NEAR(arm.states()[0].position, (3518 - 2025) * 2 * M_PI / 4096, 1e-9);
  EXPECT_DOUBLE_EQ(arm.states()[0].voltage, 12.0);
  EXPECT_DOUBLE_EQ(arm.states()[0].temperature, 31.0);
}

TEST_F(ArmTest, ReconfiguringACalibratedArmWritesNoEeprom)
{
  {
    sd::So100Arm arm(config());
    arm.configure();
  }
  const std::size_t before = eeprom_writes();
  sd::So100Arm again(config());
  again.configure();
  EXPECT_EQ(eeprom_writes(), before);
}

TEST_F(ArmTest, ConfigureRejectsAServoThatIsNotAnSts3215)
{
  emulator.set_register(3, sd::reg::kModelNumber, 2, 1234);
  sd::So100Arm arm(config());
  const std::string error = error_of([&] {arm.configure();});
  EXPECT_NE(error.find("joint 'elbow_flex': servo 3 reports model number 1234, expected 777"), std::string::npos)
    << error;
  EXPECT_FALSE(arm.connected());
}

TEST_F(ArmTest, ConfigureNamesTheMissingJoint)
{
  emulator.set_faults(5, {true});
  sd::So100Arm arm(config(100ms, 1));
  const std::string error = error_of([&] {arm.configure();});
  EXPECT_NE(error.find("joint 'wrist_roll': servo 5: no reply to PING"), std::string::npos) << error;
}

TEST_F(ArmTest, ConfigureFailsWhenTheEepromStaysLocked)
{
  sd::ServoFaults faults;
  faults.eeprom_lock_stuck = true;
  emulator.set_faults(6, faults);
  sd::So100Arm arm(config());
  const std::string error = error_of([&] {arm.configure();});
  EXPECT_NE(error.find("joint 'gripper': servo 6 refused the EEPROM write"), std::string::npos) << error;
}

TEST_F(ArmTest, ActivateSeedsGoalsFromPositionsBeforeEnablingTorque)
{
  sd::So100Arm arm(config());
  arm.configure();
  center(arm);
  emulator.set_present_position(3, 1500);
  const std::size_t first_new = emulator.writes().size();
  arm.activate();
  EXPECT_TRUE(arm.torque_enabled());
  EXPECT_NEAR(arm.commands()[2], (1500 - 2001) * 2 * M_PI / 4096, 1e-9);
  for (std::size_t i = 0; i < 6; ++i) {
    EXPECT_DOUBLE_EQ(arm.commands()[i], arm.states()[i].position);
  }
  const auto writes = emulator.writes();
  std::size_t goals = 0;
  for (std::size_t i = first_new; i < writes.size(); ++i) {
    if (writes[i].address == sd::reg::kGoalPosition) {
      ++goals;
      const int present = emulator.register_value(writes[i].id, sd::reg::kPresentPosition, 2);
      EXPECT_EQ(sd::le16(writes[i].data.data()), present) << "servo " << int(writes[i].id);
    }
    if (writes[i].address == sd::reg::kTorqueEnable) {
      EXPECT_EQ(goals, 6u) << "torque enabled on servo " << int(writes[i].id) << " before all goals were seeded";
    }
  }
  for (std::uint8_t id = 1; id <= 6; ++id) {
    EXPECT_EQ(emulator.register_value(id, sd::reg::kTorqueEnable, 1), 1);
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(emulator.register_value(3, sd::reg::kPresentPosition, 2), 1500) << "activation moved the arm";
}

TEST_F(ArmTest, ActivateRefusesAJointFarOutsideItsCalibratedRange)
{
  sd::So100Arm arm(config());
  arm.configure();
  center(arm);
  emulator.set_present_position(1, 3292 + 51);  // shoulder_pan range ends at 3292, tolerance 50
  const std::string error = error_of([&] {arm.activate();});
  EXPECT_NE(error.find("joint 'shoulder_pan' is at tick 3343, outside its calibrated range [758, 3292]"),
    std::string::npos) << error;
  EXPECT_FALSE(arm.torque_enabled());
  for (std::uint8_t id = 1; id <= 6; ++id) {
    EXPECT_EQ(emulator.register_value(id, sd::reg::kTorqueEnable, 1), 0);
  }
  emulator.set_present_position(1, 3292 + 50);
  EXPECT_NO_THROW(arm.activate());
}

TEST_F(ArmTest, FailedActivationLeavesNoServoStiff)
{
  sd::So100Arm arm(config(100ms, 0));
  arm.configure();
  center(arm);
  // Servo 4 acts on WRITEs but, at response status level 0, never acknowledges them.
  emulator.set_register(4, sd::reg::kResponseStatusLevel, 1, 0);
  const std::string error = error_of([&] {arm.activate();});
  EXPECT_NE(error.find("joint 'wrist_flex': servo 4: no reply to WRITE(40, 1)"), std::string::npos) << error;
  EXPECT_FALSE(arm.torque_enabled());
  for (std::uint8_t id = 1; id <= 6; ++id) {
    EXPECT_EQ(emulator.register_value(id, sd::reg::kTorqueEnable, 1), 0) << "servo " << int(id) << " left stiff";
  }
}

TEST_F(ArmTest, WriteAndReadAreOneSyncWriteAndOneSyncReadAndTheArmFollows)
{
  auto c = config();
  c.slow_state_period = 1000;
  sd::So100Arm arm(c);
  arm.configure();
  center(arm);
  arm.activate();
  const auto sync_reads = emulator.instruction_count(sd::instruction::kSyncRead);
  const auto sync_writes = emulator.instruction_count(sd::instruction::kSyncWrite);
  const auto reads = emulator.instruction_count(sd::instruction::kRead);
  arm.commands()[1] += 0.5;
  arm.commands()[3] += 0.4;  // wrist_flex runs inverted: its ticks go down
  const double target1 = arm.commands()[1];
  const double target3 = arm.commands()[3];
  int cycles = 0;
  ASSERT_TRUE(eventually([&] {
      ++cycles;
      EXPECT_EQ(arm.write(), sd::CycleResult::kOk);
      EXPECT_EQ(arm.read(), sd::CycleResult::kOk);
      return std::abs(arm.states()[1].position - target1) < 0.002 && std::abs(arm.states()[3].position - target3) < 0.002;
    }));
  EXPECT_EQ(emulator.instruction_count(sd::instruction::kSyncWrite) - sync_writes, static_cast<std::uint64_t>(cycles));
  // One slow-state read at the first cycle, then position+speed only.
  EXPECT_EQ(emulator.instruction_count(sd::instruction::kSyncRead) - sync_reads, static_cast<std::uint64_t>(cycles) + 1);
  EXPECT_EQ(emulator.instruction_count(sd::instruction::kRead), reads) << "read() must not poll servos one by one";
}

TEST_F(ArmTest, VelocityOfAJointMovingDownIsNegative)
{
  sd::So100Arm arm(config());
  arm.configure();
  center(arm);
  arm.activate();
  arm.commands()[2] -= 1.0;
  double slowest = 0.0;
  ASSERT_TRUE(eventually([&] {
      arm.write();
      arm.read();
      slowest = std::min(slowest, arm.states()[2].velocity);
      return std::abs(arm.states()[2].position - arm.commands()[2]) < 0.002;
    }));
  EXPECT_LT(slowest, -1.0);  // ~3400 ticks/s = 5.2 rad/s in the emulator
  EXPECT_GT(slowest, -6.0);
}

TEST_F(ArmTest, CommandsAreClampedToTheCalibratedRangeAndNanHolds)
{
  sd::So100Arm arm(config());
  arm.configure();
  center(arm);
  arm.activate();
  arm.commands()[0] = 100.0;
  arm.commands()[1] = std::nan("");
  const int before = emulator.register_value(2, sd::reg::kPresentPosition, 2);
  ASSERT_EQ(arm.write(), sd::CycleResult::kOk);
  ASSERT_TRUE(eventually([&] {return emulator.register_value(1, sd::reg::kGoalPosition, 2) == 3292;}));
  EXPECT_EQ(emulator.register_value(2, sd::reg::kGoalPosition, 2), before);
}

TEST_F(ArmTest, DeactivateDisablesTorqueAndWriteThenSendsNothing)
{
  sd::So100Arm arm(config());
  arm.configure();
  center(arm);
  arm.activate();
  arm.deactivate();
  EXPECT_FALSE(arm.torque_enabled());
  for (std::uint8_t id = 1; id <= 6; ++id) {
    EXPECT_EQ(emulator.register_value(id, sd::reg::kTorqueEnable, 1), 0);
  }
  const auto sync_writes = emulator.instruction_count(sd::instruction::kSyncWrite);
  EXPECT_EQ(arm.write(), sd::CycleResult::kOk);
  EXPECT_EQ(emulator.instruction_count(sd::instruction::kSyncWrite), sync_writes);
}

TEST_F(ArmTest, ConsecutiveBusFailuresEscalateAndASuccessResetsTheCount)
{
  auto c = config(100ms, 0);
  c.max_consecutive_failures = 3;
  sd::So100Arm arm(c);
  arm.configure();
  center(arm);
  arm.activate();
  emulator.set_faults(3, {true});
  EXPECT_EQ(arm.read(), sd::CycleResult::kSkipped);
  EXPECT_EQ(arm.read(), sd::CycleResult::kSkipped);
  emulator.set_faults(3, {});
  EXPECT_EQ(arm.read(), sd::CycleResult::kOk);
  EXPECT_EQ(arm.consecutive_failures(), 0);
  emulator.set_faults(3, {true});
  EXPECT_EQ(arm.read(), sd::CycleResult::kSkipped);
  EXPECT_EQ(arm.read(), sd::CycleResult::kSkipped);
  EXPECT_EQ(arm.read(), sd::CycleResult::kFailed);
  EXPECT_NE(arm.last_error().find("joint 'elbow_flex': servo 3: no reply to SYNC_READ"), std::string::npos)
    << arm.last_error();
}

TEST_F(ArmTest, OverheatingServoStopsTheArm)
{
  auto c = config();
  c.max_consecutive_failures = 2;
  sd::So100Arm arm(c);
  arm.configure();
  center(arm);
  arm.activate();
  sd::ServoFaults faults;
  faults.error_bits = sd::status_error::kOverheat;
  emulator.set_faults(6, faults);
  EXPECT_EQ(arm.read(), sd::CycleResult::kSkipped);
  EXPECT_EQ(arm.read(), sd::CycleResult::kFailed);
  EXPECT_NE(arm.last_error().find("joint 'gripper'"), std::string::npos);
  EXPECT_NE(arm.last_error().find("overheat"), std::string::npos);
}

TEST_F(ArmTest, SlowStatesAreReadAtTheLowerRate)
{
  auto c = config();
  c.slow_state_period = 3;
  sd::So100Arm arm(c);
  arm.configure();
  const auto before = emulator.instruction_count(sd::instruction::kSyncRead);
  for (int i = 0; i < 6; ++i) {
    ASSERT_EQ(arm.read(), sd::CycleResult::kOk);
  }
  EXPECT_EQ(emulator.instruction_count(sd::instruction::kSyncRead) - before, 6u + 2u);
}

TEST(ArmConfig, RejectsInconsistentConfiguration)
{
  sd::ArmConfig c;
  c.port = "/dev/null";
  c.joints = sd::default_so100_calibration();
  EXPECT_NO_THROW(c.validate());
  c.joints[1].id = 1;
  EXPECT_NE(error_of([&] {c.validate();}).find("servo id 1 is used by two joints"), std::string::npos);
  c.joints = sd::default_so100_calibration();
  c.gripper_joint = "claw";
  EXPECT_NE(error_of([&] {c.validate();}).find("gripper joint 'claw'"), std::string::npos);
  c.gripper_joint = "";
  c.port = "";
  EXPECT_NE(error_of([&] {c.validate();}).find("no serial port"), std::string::npos);
}
