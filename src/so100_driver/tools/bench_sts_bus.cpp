// Time of one control cycle (SYNC_READ of position+speed and SYNC_WRITE of goals for six servos)
// through the real bus library over a pseudo-terminal to the emulator, next to the time the same
// bytes take on the wire at 1 Mbaud. Ends with one JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "so100_driver/so100_arm.hpp"
#include "so100_driver/sts_bus.hpp"
#include "so100_driver/sts_emulator.hpp"

namespace sd = so100_driver;
using Clock = std::chrono::steady_clock;

namespace
{
double percentile(std::vector<double> values, double q)
{
  std::sort(values.begin(), values.end());
  const auto index = static_cast<std::size_t>(q * static_cast<double>(values.size() - 1) + 0.5);
  return values[index];
}
}  // namespace

int main(int argc, char ** argv)
{
  int cycles = 2000;
  if (argc > 1) {
    cycles = std::atoi(argv[1]);
    if (cycles < 10) {
      std::fprintf(stderr, "usage: bench_sts_bus [cycles >= 10]\n");
      return 2;
    }
  }
  constexpr int kBaud = 1000000;
  constexpr int kBitsPerByte = 10;  // 8N1: start + 8 data + stop
  const std::vector<std::uint8_t> ids{1, 2, 3, 4, 5, 6};

  sd::StsEmulator emulator;
  auto bus_holder = std::make_unique<sd::StsBus>(std::make_unique<sd::SerialPort>(emulator.device(), kBaud));
  sd::StsBus & bus = *bus_holder;

  // Bytes on the wire for one cycle, from the packets the library actually sends.
  sd::Bytes read_params{sd::reg::kPresentPosition, 4};
  read_params.insert(read_params.end(), ids.begin(), ids.end());
  const std::size_t request_bytes = sd::encode_instruction(sd::kBroadcastId, sd::instruction::kSyncRead, read_params).size();
  const std::size_t reply_bytes = ids.size() * sd::encode_status(1, 0, sd::Bytes(4)).size();
  std::vector<std::pair<std::uint8_t, sd::Bytes>> goals;
  sd::Bytes write_params{sd::reg::kGoalPosition, 2};
  for (const auto id : ids) {
    goals.emplace_back(id, sd::Bytes{0x00, 0x08});
    write_params.insert(write_params.end(), {id, 0x00, 0x08});
  }
  const std::size_t write_bytes = sd::encode_instruction(sd::kBroadcastId, sd::instruction::kSyncWrite, write_params).size();
  const std::size_t wire_bytes = request_bytes + reply_bytes + write_bytes;
  const double wire_us = static_cast<double>(wire_bytes * kBitsPerByte) * 1e6 / kBaud;

  for (int i = 0; i < 100; ++i) {  // warm-up
    bus.sync_read(ids, sd::reg::kPresentPosition, 4);
  }
  std::vector<double> samples;
  samples.reserve(static_cast<std::size_t>(cycles));
  for (int i = 0; i < cycles; ++i) {
    const auto start = Clock::now();
    bus.sync_read(ids, sd::reg::kPresentPosition, 4);
    bus.sync_write(sd::reg::kGoalPosition, 2, goals);
    samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
  }
  // The same cycle as the ros2_control plugin runs it: So100Arm::read() (plus the slow-state
  // SYNC_READ every 10th cycle) and So100Arm::write(), with unit conversions.
  sd::ArmConfig arm_config;
  arm_config.port = emulator.device();
  arm_config.joints = sd::default_so100_calibration();
  std::vector<double> arm_samples;
  {
    // The port is opened exclusively: release it for the arm.
    bus_holder.reset();
    sd::So100Arm arm(arm_config);
    arm.configure();
    arm.activate();
    arm_samples.reserve(static_cast<std::size_t>(cycles));
    for (int i = 0; i < cycles; ++i) {
      const auto start = Clock::now();
      if (arm.read() != sd::CycleResult::kOk || arm.write() != sd::CycleResult::kOk) {
        std::fprintf(stderr, "arm cycle failed: %s\n", arm.last_error().c_str());
        return 1;
      }
      arm_samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - start).count());
    }
    arm.deactivate();
  }
  const double arm_median = percentile(arm_samples, 0.5);
  const double arm_p99 = percentile(arm_samples, 0.99);

  double load[3] = {0, 0, 0};
  if (::getloadavg(load, 3) != 3) {
    load[0] = load[1] = load[2] = -1;
  }
  const double median = percentile(samples, 0.5);
  const double p99 = percentile(samples, 0.99);
  const double worst = *std::max_element(samples.begin(), samples.end());
  const unsigned cpus = std::thread::hardware_concurrency();

  std::printf("STS3215 bus cycle, 6 servos: SYNC_READ(56, 4) + SYNC_WRITE(42, 2), %d cycles\n", cycles);
  std::printf("  pseudo-terminal (library + emulator): median %.1f us, p99 %.1f us, max %.1f us\n", median, p99, worst);
  std::printf("  So100Arm read() + write() (the plugin's cycle): median %.1f us, p99 %.1f us\n", arm_median, arm_p99);
  std::printf("  wire at %d baud: %zu bytes (request %zu, replies %zu, write %zu) = %.0f us\n",
    kBaud, wire_bytes, request_bytes, reply_bytes, write_bytes, wire_us);
  std::printf("  highest control rate: %.0f Hz by the wire, %.0f Hz by the software path (median)\n",
    1e6 / wire_us, 1e6 / median);
  // A USB-serial adapter holds received bytes up to its latency timer before handing them to the
  // host: once per cycle (the SYNC_READ replies arrive as one burst; SYNC_WRITE has no reply).
  const double usb_1ms_hz = 1e6 / (wire_us + 1000.0);
  const double usb_16ms_hz = 1e6 / (wire_us + 16000.0);
  std::printf("  with a USB adapter's latency timer per cycle (derived): %.0f Hz at 1 ms, %.0f Hz at 16 ms (FTDI default)\n",
    usb_1ms_hz, usb_16ms_hz);
  std::printf("  load average %.2f %.2f %.2f on %u CPUs\n", load[0], load[1], load[2], cpus);
  std::printf(
    "{\"bench\": \"sts_bus\", \"servos\": 6, \"cycles\": %d, \"pty_cycle_us_median\": %.1f, "
    "\"pty_cycle_us_p99\": %.1f, \"pty_cycle_us_max\": %.1f, \"arm_cycle_us_median\": %.1f, "
    "\"arm_cycle_us_p99\": %.1f, \"wire_bytes\": %zu, \"wire_time_us\": %.1f, "
    "\"baud\": %d, \"max_rate_hz_wire\": %.0f, \"max_rate_hz_pty\": %.0f, \"max_rate_hz_usb_latency_1ms\": %.0f, "
    "\"max_rate_hz_usb_latency_16ms\": %.0f, \"loadavg\": [%.2f, %.2f, %.2f], \"cpus\": %u}\n",
    cycles, median, p99, worst, arm_median, arm_p99, wire_bytes, wire_us, kBaud, 1e6 / wire_us, 1e6 / median, usb_1ms_hz, usb_16ms_hz,
    load[0], load[1], load[2], cpus);
  return 0;
}
