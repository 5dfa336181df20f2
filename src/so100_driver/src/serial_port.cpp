#include "so100_driver/serial_port.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>
#include <system_error>

namespace so100_driver
{

namespace
{
speed_t baud_constant(int baud)
{
  switch (baud) {
    case 1000000: return B1000000;
    case 500000: return B500000;
    case 115200: return B115200;
    case 57600: return B57600;
    default:
      throw std::invalid_argument(
              "unsupported baud rate " + std::to_string(baud) +
              " (STS3215 codes: 1000000, 500000, 115200, 57600)");
  }
}

[[noreturn]] void throw_errno(const std::string & what, const std::string & device)
{
  throw std::system_error(errno, std::generic_category(), what + " " + device);
}
}  // namespace

SerialPort::SerialPort(const std::string & device, int baud)
: device_(device), baud_(baud)
{
  const speed_t speed = baud_constant(baud);
  fd_ = ::open(device.c_str(), O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) {
    throw_errno("cannot open serial port", device);
  }
  // Two drivers on one bus garble each other's packets: refuse a port somebody else holds.
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    errno = err;
    throw_errno("serial port is in use by another process:", device);
  }
  termios tio{};
  if (::tcgetattr(fd_, &tio) != 0) {
    const int err = errno;
    ::close(fd_);
    errno = err;
    throw_errno("not a serial port (tcgetattr failed):", device);
  }
  ::cfmakeraw(&tio);
  tio.c_cflag |= CLOCAL | CREAD;
  tio.c_cflag &= ~(CSTOPB | PARENB | CRTSCTS);
  tio.c_iflag &= ~(IXON | IXOFF | IXANY);
  tio.c_cc[VMIN] = 0;
  tio.c_cc[VTIME] = 0;
  ::cfsetispeed(&tio, speed);
  ::cfsetospeed(&tio, speed);
  if (::tcsetattr(fd_, TCSANOW, &tio) != 0) {
    const int err = errno;
    ::close(fd_);
    errno = err;
    throw_errno("cannot configure serial port", device);
  }
  ::tcflush(fd_, TCIOFLUSH);
}

SerialPort::~SerialPort()
{
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

void SerialPort::write_all(const Bytes & data)
{
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd pfd{fd_, POLLOUT, 0};
      if (::poll(&pfd, 1, 100) < 0 && errno != EINTR) {
        throw_errno("poll for writing failed on", device_);
      }
      continue;
    }
    throw_errno("write failed on", device_);
  }
}

std::size_t SerialPort::read_some(Bytes & out, std::chrono::steady_clock::time_point deadline)
{
  std::uint8_t chunk[256];
  for (;;) {
    const ssize_t n = ::read(fd_, chunk, sizeof(chunk));
    if (n > 0) {
      out.insert(out.end(), chunk, chunk + n);
      return static_cast<std::size_t>(n);
    }
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
      throw_errno("read failed on", device_);
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return 0;
    }
    // poll() has millisecond resolution; round up so a short timeout still waits.
    const auto wait_us = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now).count();
    pollfd pfd{fd_, POLLIN, 0};
    const int rc = ::poll(&pfd, 1, static_cast<int>((wait_us + 999) / 1000));
    if (rc < 0 && errno != EINTR) {
      throw_errno("poll for reading failed on", device_);
    }
    if (rc > 0 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))) {
      errno = EIO;
      throw_errno("serial port failed (device unplugged?):", device_);
    }
  }
}

void SerialPort::discard_input()
{
  ::tcflush(fd_, TCIFLUSH);
}

}  // namespace so100_driver
