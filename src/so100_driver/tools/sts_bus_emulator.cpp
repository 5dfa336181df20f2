// Standalone STS3215 bus emulator: six servos on a pseudo-terminal, for running the driver (or
// LeRobot, or any Feetech tool) without an arm. Prints the device path and runs until SIGINT/SIGTERM.
// Arguments between `--ros-args` and `--` (or the end) are skipped: launch_ros appends them to every
// Node it starts, and the emulator is started as one by so100_driver.launch.py.
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <thread>
#include <unistd.h>

#include "so100_driver/sts_emulator.hpp"

namespace
{
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {g_stop = 1;}
}  // namespace

int main(int argc, char ** argv)
{
  std::string link;
  bool ros_arguments = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (ros_arguments || arg == "--ros-args") {
      ros_arguments = arg != "--";
    } else if (arg == "--link" && i + 1 < argc) {
      link = argv[++i];
    } else {
      std::cerr << "usage: sts_bus_emulator [--link PATH] [--ros-args ... [--]]\n"
        "  Emulates six STS3215 servos (ids 1..6) on a pseudo-terminal and prints its path.\n"
        "  --link PATH  also make PATH a symbolic link to it (e.g. /tmp/so100_bus)\n"
        "  ROS arguments (as launch_ros appends them) are accepted and ignored.\n";
      return arg == "--help" || arg == "-h" ? 0 : 2;
    }
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  so100_driver::StsEmulator emulator;
  if (!link.empty()) {
    ::unlink(link.c_str());
    if (::symlink(emulator.device().c_str(), link.c_str()) != 0) {
      std::cerr << "cannot create link " << link << ": " << std::strerror(errno) << "\n";
      return 1;
    }
  }
  std::cout << emulator.device() << std::endl;
  while (!g_stop) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!link.empty()) {
    ::unlink(link.c_str());
  }
  return 0;
}
