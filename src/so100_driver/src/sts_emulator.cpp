#include "so100_driver/sts_emulator.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <stdexcept>
#include <system_error>

namespace so100_driver
{

namespace
{
constexpr std::uint8_t kFirstReadOnlyPresent = reg::kPresentPosition;
constexpr std::uint8_t kLastReadOnlyPresent = reg::kPresentCurrent + 1;

std::uint16_t get16(const std::array<std::uint8_t, reg::kTableSize> & regs, std::uint8_t address)
{
  return le16(regs.data() + address);
}

void set16(std::array<std::uint8_t, reg::kTableSize> & regs, std::uint8_t address, std::uint16_t value)
{
  regs[address] = static_cast<std::uint8_t>(value & 0xFF);
  regs[address + 1] = static_cast<std::uint8_t>(value >> 8);
}

int wrap_tick(double ticks)
{
  const int t = static_cast<int>(std::lround(ticks)) % kTicksPerTurn;
  return t < 0 ? t + kTicksPerTurn : t;
}
}  // namespace

StsEmulator::StsEmulator(EmulatorOptions options)
: options_(std::move(options))
{
  char name[256] = {};
  if (::openpty(&master_fd_, &slave_fd_, name, nullptr, nullptr) != 0) {
    throw std::system_error(errno, std::generic_category(), "openpty failed");
  }
  device_ = name;
  // Raw slave: a cooked pty would echo the requests back to the master and mangle 0x0D/0x0A.
  termios tio{};
  ::tcgetattr(slave_fd_, &tio);
  ::cfmakeraw(&tio);
  ::tcsetattr(slave_fd_, TCSANOW, &tio);
  ::fcntl(master_fd_, F_SETFL, ::fcntl(master_fd_, F_GETFL) | O_NONBLOCK);
  ::fcntl(master_fd_, F_SETFD, FD_CLOEXEC);
  ::fcntl(slave_fd_, F_SETFD, FD_CLOEXEC);

  for (const std::uint8_t id : options_.ids) {
    Servo servo;
    auto & r = servo.regs;
    r[0] = 3;  // firmware 3.10, as shipped on SO-100 kits
    r[1] = 10;
    set16(r, reg::kModelNumber, kSts3215ModelNumber);
    r[reg::kId] = id;
    r[reg::kBaudRate] = 0;
    r[reg::kResponseStatusLevel] = 1;
    set16(r, reg::kMinAngleLimit, 0);
    set16(r, reg::kMaxAngleLimit, 4095);
    r[13] = 70;   // max temperature
    r[14] = 140;  // max voltage 14.0 V
    r[15] = 40;   // min voltage 4.0 V
    set16(r, reg::kMaxTorqueLimit, 1000);
    r[reg::kPGain] = 32;
    set16(r, reg::kProtectionCurrent, 500);
    r[reg::kOverloadTorque] = 80;
    set16(r, 48, 1000);  // torque limit
    r[reg::kLock] = 1;
    r[reg::kPresentVoltage] = 120;
    r[reg::kPresentTemperature] = 31;
    servo.raw_position = options_.initial_position;
    refresh_present(servo);
    set16(r, reg::kGoalPosition, get16(r, reg::kPresentPosition));
    servos_.emplace(id, servo);
  }
  worker_ = std::thread([this] {run();});
}

StsEmulator::~StsEmulator()
{
  running_ = false;
  if (worker_.joinable()) {
    worker_.join();
  }
  ::close(slave_fd_);
  ::close(master_fd_);
}

StsEmulator::Servo * StsEmulator::find(std::uint8_t id)
{
  const auto it = servos_.find(id);
  return it == servos_.end() ? nullptr : &it->second;
}

StsEmulator::Servo & StsEmulator::at(std::uint8_t id)
{
  Servo * servo = find(id);
  if (servo == nullptr) {
    throw std::out_of_range("emulator has no servo " + std::to_string(id));
  }
  return *servo;
}

const StsEmulator::Servo & StsEmulator::at(std::uint8_t id) const
{
  const auto it = servos_.find(id);
  if (it == servos_.end()) {
    throw std::out_of_range("emulator has no servo " + std::to_string(id));
  }
  return it->second;
}

std::uint16_t StsEmulator::register_value(std::uint8_t id, std::uint8_t address, int size) const
{
  std::lock_guard<std::mutex> lock(mutex_);
  const auto & regs = at(id).regs;
  return size == 2 ? get16(regs, address) : regs[address];
}

void StsEmulator::set_register(std::uint8_t id, std::uint8_t address, int size, std::uint16_t value)
{
  std::lock_guard<std::mutex> lock(mutex_);
  auto & servo = at(id);
  if (size == 2) {
    set16(servo.regs, address, value);
  } else {
    servo.regs[address] = static_cast<std::uint8_t>(value);
  }
  refresh_present(servo);
}

void StsEmulator::set_present_position(std::uint8_t id, int ticks)
{
  std::lock_guard<std::mutex> lock(mutex_);
  auto & servo = at(id);
  const int offset = decode_sign_magnitude(get16(servo.regs, reg::kHomingOffset), sign_bit::kHomingOffset);
  servo.raw_position = ticks + offset;
  refresh_present(servo);
}

void StsEmulator::set_faults(std::uint8_t id, const ServoFaults & faults)
{
  std::lock_guard<std::mutex> lock(mutex_);
  at(id).faults = faults;
}

std::uint64_t StsEmulator::instruction_count(std::uint8_t instr) const
{
  std::lock_guard<std::mutex> lock(mutex_);
  const auto it = counts_.find(instr);
  return it == counts_.end() ? 0 : it->second;
}

std::vector<EmulatedWrite> StsEmulator::writes() const
{
  std::lock_guard<std::mutex> lock(mutex_);
  return writes_;
}

void StsEmulator::refresh_present(Servo & servo) const
{
  const int offset = decode_sign_magnitude(get16(servo.regs, reg::kHomingOffset), sign_bit::kHomingOffset);
  set16(servo.regs, reg::kPresentPosition, static_cast<std::uint16_t>(wrap_tick(servo.raw_position - offset)));
}

void StsEmulator::advance(double dt)
{
  for (auto & [id, servo] : servos_) {
    auto & r = servo.regs;
    double velocity = 0.0;
    if (r[reg::kTorqueEnable] == 1 && dt > 0.0) {
      int goal = decode_sign_magnitude(get16(r, reg::kGoalPosition), sign_bit::kGoalPosition);
      const int min_limit = get16(r, reg::kMinAngleLimit);
      const int max_limit = get16(r, reg::kMaxAngleLimit);
      if (min_limit != 0 || max_limit != 0) {  // both 0 means no limit (multi-turn)
        goal = std::clamp(goal, min_limit, max_limit);
      }
      const int offset = decode_sign_magnitude(get16(r, reg::kHomingOffset), sign_bit::kHomingOffset);
      const double target = goal + offset;
      const int speed_register = std::abs(decode_sign_magnitude(get16(r, reg::kGoalSpeed), sign_bit::kSpeed));
      const double speed = speed_register > 0 ? speed_register : options_.max_speed;
      const double step = std::clamp(target - servo.raw_position, -speed * dt, speed * dt);
      servo.raw_position += step;
      velocity = step / dt;
    }
    const int ticks_per_second = std::clamp(static_cast<int>(std::lround(velocity)), -32767, 32767);
    set16(r, reg::kPresentSpeed, encode_sign_magnitude(ticks_per_second, sign_bit::kSpeed));
    // Load follows the motion (0.1 % of max torque), a rough but signed stand-in for the motor current.
    const int load = std::clamp(ticks_per_second / 10, -1000, 1000);
    set16(r, reg::kPresentLoad, encode_sign_magnitude(load, sign_bit::kLoad));
    set16(r, reg::kPresentCurrent, static_cast<std::uint16_t>(std::abs(load) / 4));
    r[reg::kMoving] = ticks_per_second != 0 ? 1 : 0;
    refresh_present(servo);
  }
}

void StsEmulator::apply_write(std::uint8_t id, Servo & servo, std::uint8_t address, const Bytes & data)
{
  bool applied = true;
  for (std::size_t i = 0; i < data.size(); ++i) {
    const std::size_t a = address + i;
    if (a >= reg::kTableSize) {
      applied = false;
      break;
    }
    const bool read_only = a < reg::kId || (a >= kFirstReadOnlyPresent && a <= kLastReadOnlyPresent);
    const bool eeprom_locked = a < reg::kEepromEnd && servo.regs[reg::kLock] != 0;
    const bool lock_stuck = a == reg::kLock && servo.faults.eeprom_lock_stuck;
    if (read_only || eeprom_locked || lock_stuck) {
      applied = false;
      continue;
    }
    if (a == reg::kTorqueEnable && data[i] == 128) {
      // Re-zero: choose the homing offset that makes the current position read 2048.
      const int offset = wrap_tick(servo.raw_position) - 2048;
      set16(servo.regs, reg::kHomingOffset, encode_sign_magnitude(offset, sign_bit::kHomingOffset));
      continue;
    }
    servo.regs[a] = data[i];
  }
  refresh_present(servo);
  writes_.push_back({id, address, data, applied});
}

void StsEmulator::reply(std::uint8_t id, Servo & servo, const Bytes & params, Bytes & out)
{
  if (servo.faults.drop_replies > 0) {
    --servo.faults.drop_replies;
    return;
  }
  Bytes packet = encode_status(id, servo.faults.error_bits, params);
  if (servo.faults.corrupt_replies > 0) {
    --servo.faults.corrupt_replies;
    packet.back() ^= 0x5A;
  }
  if (servo.faults.reply_delay.count() > 0 || !delayed_.empty()) {
    auto when = std::chrono::steady_clock::now() + servo.faults.reply_delay;
    if (!delayed_.empty()) {
      when = std::max(when, delayed_.back().first);
    }
    if (!out.empty()) {  // keep the order of replies generated earlier in this round
      delayed_.emplace_back(std::chrono::steady_clock::now(), std::move(out));
      out.clear();
    }
    delayed_.emplace_back(when, std::move(packet));
    return;
  }
  out.insert(out.end(), packet.begin(), packet.end());
}

void StsEmulator::handle(const Packet & packet, Bytes & out)
{
  ++counts_[packet.code];
  const auto & p = packet.params;
  switch (packet.code) {
    case instruction::kPing:
    case instruction::kRead:
    case instruction::kWrite: {
        Servo * servo = find(packet.id);
        if (packet.id == kBroadcastId && packet.code == instruction::kWrite && p.size() >= 2) {
          for (auto & [id, s] : servos_) {
            if (!s.faults.offline) {
              apply_write(id, s, p[0], Bytes(p.begin() + 1, p.end()));
            }
          }
          return;  // broadcasts are never answered
        }
        if (servo == nullptr || servo->faults.offline) {
          return;
        }
        if (packet.code == instruction::kPing) {
          reply(packet.id, *servo, {}, out);
        } else if (packet.code == instruction::kRead) {
          if (p.size() != 2 || p[0] + p[1] > static_cast<int>(reg::kTableSize)) {
            return;  // a real servo ignores a malformed request
          }
          reply(packet.id, *servo, Bytes(servo->regs.begin() + p[0], servo->regs.begin() + p[0] + p[1]), out);
        } else {
          if (p.size() < 2) {
            return;
          }
          apply_write(packet.id, *servo, p[0], Bytes(p.begin() + 1, p.end()));
          if (servo->regs[reg::kResponseStatusLevel] != 0) {
            reply(packet.id, *servo, {}, out);
          }
        }
        return;
      }
    case instruction::kSyncRead: {
        if (p.size() < 3 || p[0] + p[1] > static_cast<int>(reg::kTableSize)) {
          return;
        }
        // Servos answer in the order the request lists them.
        for (std::size_t i = 2; i < p.size(); ++i) {
          Servo * servo = find(p[i]);
          if (servo != nullptr && !servo->faults.offline) {
            reply(p[i], *servo, Bytes(servo->regs.begin() + p[0], servo->regs.begin() + p[0] + p[1]), out);
          }
        }
        return;
      }
    case instruction::kSyncWrite: {
        if (p.size() < 2 || p[1] == 0) {
          return;
        }
        const std::size_t stride = p[1] + 1u;
        for (std::size_t i = 2; i + stride <= p.size(); i += stride) {
          Servo * servo = find(p[i]);
          if (servo != nullptr && !servo->faults.offline) {
            apply_write(p[i], *servo, p[0], Bytes(p.begin() + static_cast<std::ptrdiff_t>(i + 1),
              p.begin() + static_cast<std::ptrdiff_t>(i + stride)));
          }
        }
        return;
      }
    default:
      return;  // REG_WRITE / ACTION / RESET are not used by the driver
  }
}

void StsEmulator::send(const Bytes & out)
{
  std::size_t done = 0;
  while (done < out.size() && running_) {
    const ssize_t n = ::write(master_fd_, out.data() + done, out.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else {
      pollfd wfd{master_fd_, POLLOUT, 0};
      ::poll(&wfd, 1, 1);
    }
  }
}

void StsEmulator::run()
{
  using Clock = std::chrono::steady_clock;
  Bytes rx;
  auto last = Clock::now();
  while (running_) {
    pollfd pfd{master_fd_, POLLIN, 0};
    ::poll(&pfd, 1, 1);
    std::uint8_t chunk[512];
    for (;;) {
      const ssize_t n = ::read(master_fd_, chunk, sizeof(chunk));
      if (n <= 0) {
        break;
      }
      rx.insert(rx.end(), chunk, chunk + n);
    }
    Bytes out;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto now = Clock::now();
      advance(std::chrono::duration<double>(now - last).count());
      last = now;
      Packet packet;
      for (;;) {
        const ParseResult result = parse_packet(rx, packet);
        if (result == ParseResult::kIncomplete) {
          break;
        }
        if (result == ParseResult::kPacket) {
          handle(packet, out);
        }  // a request with a bad checksum is ignored, as by a real servo
      }
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto now = Clock::now();
      while (!delayed_.empty() && delayed_.front().first <= now) {
        out.insert(out.end(), delayed_.front().second.begin(), delayed_.front().second.end());
        delayed_.erase(delayed_.begin());
      }
    }
    send(out);
  }
}

}  // namespace so100_driver
