// An STS3215 bus emulator on a pseudo-terminal: servos that answer the protocol as real ones do,
// move toward their goal over time, honour the EEPROM lock, and can be told to misbehave.
#ifndef SO100_DRIVER__STS_EMULATOR_HPP_
#define SO100_DRIVER__STS_EMULATOR_HPP_

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "so100_driver/protocol.hpp"

namespace so100_driver
{

/// Faults to inject into one emulated servo.
struct ServoFaults
{
  bool offline = false;            ///< dropped off the bus: ignores everything, never answers
  int drop_replies = 0;            ///< the next N replies are not sent (the request still acts)
  int corrupt_replies = 0;         ///< the next N replies carry a wrong checksum
  std::uint8_t error_bits = 0;     ///< status error byte sent with every reply
  bool eeprom_lock_stuck = false;  ///< writes to the lock register are ignored
  /// Replies leave this late (later replies queue behind them, as on a real half-duplex line).
  std::chrono::microseconds reply_delay{0};
};

/// Emulator settings.
struct EmulatorOptions
{
  std::vector<std::uint8_t> ids{1, 2, 3, 4, 5, 6};
  /// Speed (ticks/s) when the goal speed register is 0; an STS3215 at 12 V turns ~0.2 s / 60 deg.
  double max_speed = 3400.0;
  /// Present position of every servo at power-up.
  int initial_position = 2048;
};

/// One instruction a servo executed that changed registers (for sequencing checks in tests).
struct EmulatedWrite
{
  std::uint8_t id;
  std::uint8_t address;
  Bytes data;
  bool applied;  ///< false when the EEPROM lock (or a read-only address) refused it
};

/// Emulated bus on the master side of a pseudo-terminal; clients open device() like a serial port.
/// A worker thread answers requests and advances the servos' motion.
class StsEmulator
{
public:
  explicit StsEmulator(EmulatorOptions options = {});
  ~StsEmulator();
  StsEmulator(const StsEmulator &) = delete;
  StsEmulator & operator=(const StsEmulator &) = delete;

  /// Path of the pseudo-terminal's slave side, e.g. /dev/pts/7.
  const std::string & device() const {return device_;}

  /// Register access bypassing the protocol (and the EEPROM lock). size is 1 or 2 bytes.
  std::uint16_t register_value(std::uint8_t id, std::uint8_t address, int size) const;
  void set_register(std::uint8_t id, std::uint8_t address, int size, std::uint16_t value);
  /// Turn the horn by hand: the servo now reads `ticks` as its present position.
  void set_present_position(std::uint8_t id, int ticks);
  void set_faults(std::uint8_t id, const ServoFaults & faults);

  /// Number of instruction packets of type `instr` received (any id, broadcast included).
  std::uint64_t instruction_count(std::uint8_t instr) const;
  /// Every register write received, in order.
  std::vector<EmulatedWrite> writes() const;

private:
  struct Servo
  {
    std::array<std::uint8_t, reg::kTableSize> regs{};
    double raw_position = 0.0;  // encoder ticks before the homing offset
    ServoFaults faults;
  };

  void run();
  void advance(double dt);
  void refresh_present(Servo & servo) const;
  void handle(const Packet & packet, Bytes & out);
  void reply(std::uint8_t id, Servo & servo, const Bytes & params, Bytes & out);
  void send(const Bytes & out);
  void apply_write(std::uint8_t id, Servo & servo, std::uint8_t address, const Bytes & data);
  Servo * find(std::uint8_t id);
  Servo & at(std::uint8_t id);
  const Servo & at(std::uint8_t id) const;

  EmulatorOptions options_;
  int master_fd_ = -1;
  int slave_fd_ = -1;
  std::string device_;
  mutable std::mutex mutex_;
  std::map<std::uint8_t, Servo> servos_;
  std::map<std::uint8_t, std::uint64_t> counts_;
  std::vector<EmulatedWrite> writes_;
  // Replies waiting for their send time (only used with reply_delay), in bus order.
  std::vector<std::pair<std::chrono::steady_clock::time_point, Bytes>> delayed_;
  std::atomic<bool> running_{true};
  std::thread worker_;
};

}  // namespace so100_driver

#endif  // SO100_DRIVER__STS_EMULATOR_HPP_
