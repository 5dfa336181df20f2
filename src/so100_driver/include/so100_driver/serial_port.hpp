// A raw termios serial port (8N1, no flow control) for the half-duplex servo bus adapter.
#ifndef SO100_DRIVER__SERIAL_PORT_HPP_
#define SO100_DRIVER__SERIAL_PORT_HPP_

#include <chrono>
#include <cstddef>
#include <string>

#include "so100_driver/protocol.hpp"

namespace so100_driver
{

/// Exclusive, non-blocking raw serial port. Throws std::system_error naming the device when it
/// cannot be opened, locked or configured.
class SerialPort
{
public:
  /// Open `device` (e.g. /dev/ttyACM0 or a pseudo-terminal) at `baud` (1,000,000 for the SO arms).
  SerialPort(const std::string & device, int baud);
  ~SerialPort();
  SerialPort(const SerialPort &) = delete;
  SerialPort & operator=(const SerialPort &) = delete;

  /// Write every byte (waiting for the driver's buffer if needed) or throw std::system_error.
  void write_all(const Bytes & data);

  /// Append the bytes available now or arriving before `deadline` to `out`; returns how many
  /// were read (0 means the deadline passed with nothing received).
  std::size_t read_some(Bytes & out, std::chrono::steady_clock::time_point deadline);

  /// Drop unread input, e.g. a late reply to a request that already timed out.
  void discard_input();

  const std::string & device() const {return device_;}
  int baud() const {return baud_;}

private:
  std::string device_;
  int baud_;
  int fd_ = -1;
};

}  // namespace so100_driver

#endif  // SO100_DRIVER__SERIAL_PORT_HPP_
