// Feetech STS bus master: PING / READ / WRITE / SYNC_READ / SYNC_WRITE with timeouts, bounded
// retries and errors that name the servo and the fault.
#ifndef SO100_DRIVER__STS_BUS_HPP_
#define SO100_DRIVER__STS_BUS_HPP_

#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "so100_driver/protocol.hpp"
#include "so100_driver/serial_port.hpp"

namespace so100_driver
{

/// What went wrong on the bus.
enum class Fault
{
  kNoReply,        ///< no (complete) status packet before the timeout
  kBadChecksum,    ///< a status packet arrived with a wrong checksum
  kStatusError,    ///< the servo answered with error bits set (overheat, overload, ...)
  kMalformedReply, ///< the status packet had the wrong length for the request
};

/// Short name of a fault ("no reply", "bad checksum", ...).
const char * fault_name(Fault fault);

/// A bus failure for one servo. what() reads e.g.
/// "servo 3: no reply to READ(56, 2) within 20 ms (3 attempts)".
class BusError : public std::runtime_error
{
public:
  BusError(std::uint8_t servo_id, Fault fault, std::uint8_t status, const std::string & message)
  : std::runtime_error(message), servo_id_(servo_id), fault_(fault), status_(status) {}

  std::uint8_t servo_id() const {return servo_id_;}
  Fault fault() const {return fault_;}
  /// The status error byte (only meaningful for Fault::kStatusError).
  std::uint8_t status() const {return status_;}

private:
  std::uint8_t servo_id_;
  Fault fault_;
  std::uint8_t status_;
};

/// Timing and retry policy of the bus.
struct BusOptions
{
  /// How long to wait for each status packet (per servo in a SYNC_READ). USB adapters buffer
  /// replies for up to their latency timer (16 ms by default on FTDI chips), hence the default.
  std::chrono::microseconds reply_timeout{20000};
  /// Extra attempts after a failed exchange (no reply, bad checksum, malformed reply). Status
  /// errors are not retried: the servo did answer.
  int retries = 2;
};

/// Counters for diagnostics.
struct BusStats
{
  std::uint64_t exchanges = 0;  ///< requests sent
  std::uint64_t retries = 0;    ///< requests repeated after a failure
  std::uint64_t failures = 0;   ///< exchanges that failed after all retries
};

/// Bus master over a serial port. Not thread-safe: one owner drives the bus.
class StsBus
{
public:
  StsBus(std::unique_ptr<SerialPort> port, BusOptions options = {});

  /// PING `id`; throws BusError if it does not answer.
  void ping(std::uint8_t id);
  /// READ `length` bytes at `address` of servo `id`.
  Bytes read(std::uint8_t id, std::uint8_t address, std::uint8_t length);
  std::uint8_t read_u8(std::uint8_t id, std::uint8_t address);
  std::uint16_t read_u16(std::uint8_t id, std::uint8_t address);
  /// WRITE `data` at `address` and wait for the servo's acknowledgement.
  void write(std::uint8_t id, std::uint8_t address, const Bytes & data);
  void write_u8(std::uint8_t id, std::uint8_t address, std::uint8_t value);
  void write_u16(std::uint8_t id, std::uint8_t address, std::uint16_t value);
  /// One SYNC_READ of `length` bytes at `address` from every id; result i belongs to ids[i].
  std::vector<Bytes> sync_read(
    const std::vector<std::uint8_t> & ids, std::uint8_t address, std::uint8_t length);
  /// One SYNC_WRITE (broadcast, unacknowledged) of `length` bytes at `address`; each entry is
  /// (id, data) with data.size() == length.
  void sync_write(
    std::uint8_t address, std::uint8_t length,
    const std::vector<std::pair<std::uint8_t, Bytes>> & data);

  const BusStats & stats() const {return stats_;}
  const BusOptions & options() const {return options_;}
  const SerialPort & port() const {return *port_;}

private:
  // Send `request` and collect one status packet from each of `ids` with `reply_length`
  // parameter bytes, retrying the whole exchange on a failure.
  std::vector<Bytes> exchange(
    const Bytes & request, const std::vector<std::uint8_t> & ids, std::size_t reply_length,
    const std::string & what);
  std::vector<Bytes> exchange_once(
    const Bytes & request, const std::vector<std::uint8_t> & ids, std::size_t reply_length,
    const std::string & what, int attempts);

  std::unique_ptr<SerialPort> port_;
  BusOptions options_;
  BusStats stats_;
  Bytes rx_;
};

}  // namespace so100_driver

#endif  // SO100_DRIVER__STS_BUS_HPP_
