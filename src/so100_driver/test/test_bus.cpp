// The real bus library (termios port, StsBus) against the STS3215 emulator over a pseudo-terminal.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "so100_driver/sts_bus.hpp"
#include "so100_driver/sts_emulator.hpp"

namespace sd = so100_driver;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace
{
const std::vector<std::uint8_t> kIds{1, 2, 3, 4, 5, 6};

class BusTest : public ::testing::Test
{
protected:
  // Generous timeout for exchanges that must succeed: the emulator thread may be descheduled on a
  // busy CI machine. Tests of timeouts use their own short ones.
  std::unique_ptr<sd::StsBus> connect(std::chrono::microseconds timeout = 500ms, int retries = 2)
  {
    sd::BusOptions options;
    options.reply_timeout = timeout;
    options.retries = retries;
    return std::make_unique<sd::StsBus>(std::make_unique<sd::SerialPort>(emulator.device(), 1000000), options);
  }

  // Poll until `done` holds or `limit` passes.
  template<typename F>
  bool eventually(F done, std::chrono::milliseconds limit = 3000ms)
  {
    const auto end = Clock::now() + limit;
    while (Clock::now() < end) {
      if (done()) {
        return true;
      }
      std::this_thread::sleep_for(5ms);
    }
    return done();
  }

  sd::StsEmulator emulator;
};

sd::BusError expect_bus_error(const std::function<void()> & action)
{
  try {
    action();
  } catch (const sd::BusError & error) {
    return error;
  }
  ADD_FAILURE() << "expected a BusError";
  return sd::BusError(0, sd::Fault::kNoReply, 0, "none");
}
}  // namespace

TEST_F(BusTest, PingsSixServosAndReadsModelNumber777)
{
  auto bus = connect();
  for (const auto id : kIds) {
    bus->ping(id);
    EXPECT_EQ(bus->read_u16(id, sd::reg::kModelNumber), sd::kSts3215ModelNumber);
    EXPECT_EQ(bus->read_u8(id, sd::reg::kId), id);
  }
}

TEST_F(BusTest, SyncReadGetsAllSixPositionsInOneRequest)
{
  for (const auto id : kIds) {
    emulator.set_present_position(id, 500 + 300 * id);
  }
  auto bus = connect();
  const auto replies = bus->sync_read(kIds, sd::reg::kPresentPosition, 4);
  ASSERT_EQ(replies.size(), 6u);
  for (std::size_t i = 0; i < kIds.size(); ++i) {
    ASSERT_EQ(replies[i].size(), 4u);
    EXPECT_EQ(sd::le16(replies[i].data()), 500 + 300 * kIds[i]);
  }
  EXPECT_EQ(emulator.instruction_count(sd::instruction::kSyncRead), 1u);
  EXPECT_EQ(emulator.instruction_count(sd::instruction::kRead), 0u);
}

TEST_F(BusTest, SyncWriteSetsSixGoalsAndServosMoveThereOverTime)
{
  auto bus = connect();
  for (const auto id : kIds) {
    bus->write_u8(id, sd::reg::kTorqueEnable, 1);
  }
  std::vector<std::pair<std::uint8_t, sd::Bytes>> goals;
  for (const auto id : kIds) {
    sd::Bytes data;
    sd::put_le16(data, static_cast<std::uint16_t>(2048 + 200 * id));
    goals.emplace_back(id, data);
  }
  const auto start = Clock::now();
  bus->sync_write(sd::reg::kGoalPosition, 2, goals);
  ASSERT_TRUE(eventually([&] {
      const auto now = bus->sync_read(kIds, sd::reg::kPresentPosition, 2);
      for (std::size_t i = 0; i < kIds.size(); ++i) {
        if (sd::le16(now[i].data()) != 2048 + 200 * kIds[i]) {
          return false;
        }
      }
      return true;
    }));
  // Servo 6 travels 1200 ticks at 3400 ticks/s: ~0.35 s, not instantly.
  EXPECT_GE(Clock::now() - start, 300ms);
  EXPECT_EQ(emulator.instruction_count(sd::instruction::kSyncWrite), 1u);
}

TEST_F(BusTest, MissingServoTimesOutWithinTheBoundAndIsNamed)
{
  emulator.set_faults(4, {true});
  auto bus = connect(100ms, 2);
  const auto start = Clock::now();
  const auto error = expect_bus_error([&] {bus->sync_read(kIds, sd::reg::kPresentPosition, 4);});
  const auto elapsed = Clock::now() - start;
  EXPECT_EQ(error.servo_id(), 4);
  EXPECT_EQ(error.fault(), sd::Fault::kNoReply);
  EXPECT_NE(std::string(error.what()).find("servo 4: no reply to SYNC_READ(56, 4) within 100.0 ms (3 attempts)"),
    std::string::npos) << error.what();
  EXPECT_GE(elapsed, 300ms);   // three attempts, each waiting the full timeout
  EXPECT_LT(elapsed, 3000ms);  // bounded: no endless retrying
  EXPECT_EQ(bus->stats().retries, 2u);
  EXPECT_EQ(bus->stats().failures, 1u);
  // The other servos still answer.
  bus->ping(3);
}

TEST_F(BusTest, ServoDroppingOffTheBusMidSessionIsReported)
{
  auto bus = connect(100ms, 1);
  bus->ping(2);
  emulator.set_faults(2, {true});
  const auto error = expect_bus_error([&] {bus->read(2, sd::reg::kPresentPosition, 2);});
  EXPECT_EQ(error.servo_id(), 2);
  EXPECT_EQ(error.fault(), sd::Fault::kNoReply);
  emulator.set_faults(2, {});
  EXPECT_NO_THROW(bus->ping(2));
}

TEST_F(BusTest, LostReplyIsRetried)
{
  sd::ServoFaults faults;
  faults.drop_replies = 1;
  emulator.set_faults(5, faults);
  auto bus = connect(200ms, 2);
  EXPECT_EQ(bus->read_u16(5, sd::reg::kModelNumber), 777);
  EXPECT_EQ(bus->stats().retries, 1u);
  EXPECT_EQ(bus->stats().failures, 0u);
}

TEST_F(BusTest, CorruptedReplyIsRetriedAndPersistentCorruptionReported)
{
  sd::ServoFaults faults;
  faults.corrupt_replies = 1;
  emulator.set_faults(3, faults);
  auto bus = connect(150ms, 2);
  const auto replies = bus->sync_read(kIds, sd::reg::kPresentPosition, 2);
  EXPECT_EQ(sd::le16(replies[2].data()), 2048);
  EXPECT_EQ(bus->stats().retries, 1u);

  faults.corrupt_replies = 100;
  emulator.set_faults(3, faults);
  const auto error = expect_bus_error([&] {bus->sync_read(kIds, sd::reg::kPresentPosition, 2);});
  EXPECT_EQ(error.servo_id(), 3);
  EXPECT_EQ(error.fault(), sd::Fault::kBadChecksum);
  EXPECT_NE(std::string(error.what()).find("servo 3: reply to SYNC_READ(56, 2) had a bad checksum"),
    std::string::npos) << error.what();
}

TEST_F(BusTest, StatusErrorBitsAreNamedAndNotRetried)
{
  sd::ServoFaults faults;
  faults.error_bits = sd::status_error::kOverheat | sd::status_error::kOverload;
  emulator.set_faults(6, faults);
  auto bus = connect();
  const auto error = expect_bus_error([&] {bus->sync_read(kIds, sd::reg::kPresentPosition, 4);});
  EXPECT_EQ(error.servo_id(), 6);
  EXPECT_EQ(error.fault(), sd::Fault::kStatusError);
  EXPECT_EQ(error.status(), faults.error_bits);
  EXPECT_NE(std::string(error.what()).find("servo 6: status error in reply to SYNC_READ(56, 4): overheat, overload"),
    std::string::npos) << error.what();
  EXPECT_EQ(bus->stats().retries, 0u);
}

TEST_F(BusTest, EepromWritesAreRefusedWhileLocked)
{
  auto bus = connect();
  ASSERT_EQ(bus->read_u8(2, sd::reg::kLock), 1);  // servos power up locked
  bus->write_u16(2, sd::reg::kMaxTorqueLimit, 500);
  EXPECT_EQ(bus->read_u16(2, sd::reg::kMaxTorqueLimit), 1000);
  ASSERT_FALSE(emulator.writes().empty());
  EXPECT_FALSE(emulator.writes().back().applied);

  bus->write_u8(2, sd::reg::kLock, 0);
  bus->write_u16(2, sd::reg::kMaxTorqueLimit, 500);
  bus->write_u8(2, sd::reg::kLock, 1);
  EXPECT_EQ(bus->read_u16(2, sd::reg::kMaxTorqueLimit), 500);
  // RAM registers stay writable while locked.
  bus->write_u8(2, sd::reg::kAcceleration, 200);
  EXPECT_EQ(bus->read_u8(2, sd::reg::kAcceleration), 200);
}

TEST_F(BusTest, NegativeHomingOffsetIsSignMagnitudeAndShiftsThePosition)
{
  emulator.set_present_position(1, 1000);
  auto bus = connect();
  bus->write_u8(1, sd::reg::kLock, 0);
  bus->write_u16(1, sd::reg::kHomingOffset, sd::encode_sign_magnitude(-300, sd::sign_bit::kHomingOffset));
  bus->write_u8(1, sd::reg::kLock, 1);
  EXPECT_EQ(emulator.register_value(1, sd::reg::kHomingOffset, 2), 0x800 | 300);
  // present = actual - offset: a negative offset moves the reading up.
  EXPECT_EQ(bus->read_u16(1, sd::reg::kPresentPosition), 1300);
  EXPECT_EQ(
    sd::decode_sign_magnitude(bus->read_u16(1, sd::reg::kHomingOffset), sd::sign_bit::kHomingOffset), -300);
}

TEST_F(BusTest, NegativeSpeedIsDecodedFromSignMagnitude)
{
  emulator.set_present_position(2, 3000);
  auto bus = connect();
  bus->write_u16(2, sd::reg::kGoalPosition, 1000);
  bus->write_u8(2, sd::reg::kTorqueEnable, 1);
  int speed = 0;
  std::uint16_t raw = 0;
  ASSERT_TRUE(eventually([&] {
      const auto data = bus->read(2, sd::reg::kPresentSpeed, 2);
      raw = sd::le16(data.data());
      speed = sd::decode_sign_magnitude(raw, sd::sign_bit::kSpeed);
      return speed != 0;
    }));
  EXPECT_TRUE(raw & 0x8000) << raw;
  EXPECT_LT(speed, 0);
  EXPECT_GE(speed, -3400);  // a naive unsigned read would report ~ +32k
}

TEST_F(BusTest, LateReplyFromATimedOutRequestIsNotTakenForTheNextAnswer)
{
  // The first READ times out; its answer (position 1234) lands afterwards and must be discarded
  // instead of being read as the answer to the next READ of the model number.
  emulator.set_present_position(1, 1234);
  sd::ServoFaults slow;
  slow.reply_delay = 300ms;
  emulator.set_faults(1, slow);
  auto bus = connect(150ms, 0);
  EXPECT_THROW(bus->read(1, sd::reg::kPresentPosition, 2), sd::BusError);
  emulator.set_faults(1, {});
  std::this_thread::sleep_for(400ms);  // the late reply is now waiting in the port
  EXPECT_EQ(bus->read_u16(1, sd::reg::kModelNumber), 777);
}

TEST_F(BusTest, RejectsSyncWriteWithWrongDataLength)
{
  auto bus = connect();
  EXPECT_THROW(bus->sync_write(sd::reg::kGoalPosition, 2, {{1, sd::Bytes{1}}}), std::invalid_argument);
}

TEST(SerialPort, NamesTheDeviceItCannotOpen)
{
  try {
    sd::SerialPort port("/dev/does-not-exist-so100", 1000000);
    FAIL() << "opened a missing device";
  } catch (const std::system_error & error) {
    EXPECT_NE(std::string(error.what()).find("/dev/does-not-exist-so100"), std::string::npos);
  }
  EXPECT_THROW(sd::SerialPort("/dev/null", 1234), std::invalid_argument);
}

TEST(SerialPort, RefusesAPortAnotherDriverHolds)
{
  sd::StsEmulator emulator;
  sd::SerialPort first(emulator.device(), 1000000);
  EXPECT_THROW(sd::SerialPort(emulator.device(), 1000000), std::system_error);
}
