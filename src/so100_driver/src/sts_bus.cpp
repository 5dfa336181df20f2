#include "so100_driver/sts_bus.hpp"

#include <algorithm>
#include <cstdio>

namespace so100_driver
{

const char * fault_name(Fault fault)
{
  switch (fault) {
    case Fault::kNoReply: return "no reply";
    case Fault::kBadChecksum: return "bad checksum";
    case Fault::kStatusError: return "status error";
    case Fault::kMalformedReply: return "malformed reply";
  }
  return "unknown fault";
}

StsBus::StsBus(std::unique_ptr<SerialPort> port, BusOptions options)
: port_(std::move(port)), options_(options)
{
  if (!port_) {
    throw std::invalid_argument("StsBus needs a serial port");
  }
  if (options_.retries < 0 || options_.reply_timeout.count() <= 0) {
    throw std::invalid_argument("StsBus: retries must be >= 0 and reply_timeout > 0");
  }
}

void StsBus::ping(std::uint8_t id)
{
  exchange(encode_instruction(id, instruction::kPing, {}), {id}, 0, "PING");
}

Bytes StsBus::read(std::uint8_t id, std::uint8_t address, std::uint8_t length)
{
  const std::string what = "READ(" + std::to_string(address) + ", " + std::to_string(length) + ")";
  return exchange(
    encode_instruction(id, instruction::kRead, {address, length}), {id}, length, what).front();
}

std::uint8_t StsBus::read_u8(std::uint8_t id, std::uint8_t address)
{
  return read(id, address, 1)[0];
}

std::uint16_t StsBus::read_u16(std::uint8_t id, std::uint8_t address)
{
  return le16(read(id, address, 2).data());
}

void StsBus::write(std::uint8_t id, std::uint8_t address, const Bytes & data)
{
  Bytes params{address};
  params.insert(params.end(), data.begin(), data.end());
  const std::string what = "WRITE(" + std::to_string(address) + ", " + std::to_string(data.size()) + ")";
  exchange(encode_instruction(id, instruction::kWrite, params), {id}, 0, what);
}

void StsBus::write_u8(std::uint8_t id, std::uint8_t address, std::uint8_t value)
{
  write(id, address, Bytes{value});
}

void StsBus::write_u16(std::uint8_t id, std::uint8_t address, std::uint16_t value)
{
  Bytes data;
  put_le16(data, value);
  write(id, address, data);
}

std::vector<Bytes> StsBus::sync_read(
  const std::vector<std::uint8_t> & ids, std::uint8_t address, std::uint8_t length)
{
  if (ids.empty()) {
    return {};
  }
  Bytes params{address, length};
  params.insert(params.end(), ids.begin(), ids.end());
  const std::string what = "SYNC_READ(" + std::to_string(address) + ", " + std::to_string(length) + ")";
  return exchange(encode_instruction(kBroadcastId, instruction::kSyncRead, params), ids, length, what);
}

void StsBus::sync_write(
  std::uint8_t address, std::uint8_t length,
  const std::vector<std::pair<std::uint8_t, Bytes>> & data)
{
  Bytes params{address, length};
  for (const auto & [id, bytes] : data) {
    if (bytes.size() != length) {
      throw std::invalid_argument(
              "SYNC_WRITE: servo " + std::to_string(id) + " has " + std::to_string(bytes.size()) +
              " data bytes, expected " + std::to_string(length));
    }
    params.push_back(id);
    params.insert(params.end(), bytes.begin(), bytes.end());
  }
  ++stats_.exchanges;
  port_->write_all(encode_instruction(kBroadcastId, instruction::kSyncWrite, params));
}

std::vector<Bytes> StsBus::exchange(
  const Bytes & request, const std::vector<std::uint8_t> & ids, std::size_t reply_length,
  const std::string & what)
{
  for (int attempt = 1;; ++attempt) {
    try {
      return exchange_once(request, ids, reply_length, what, attempt);
    } catch (const BusError & error) {
      if (error.fault() == Fault::kStatusError || attempt > options_.retries) {
        ++stats_.failures;
        throw;
      }
      ++stats_.retries;
    }
  }
}

std::vector<Bytes> StsBus::exchange_once(
  const Bytes & request, const std::vector<std::uint8_t> & ids, std::size_t reply_length,
  const std::string & what, int attempts)
{
  using Clock = std::chrono::steady_clock;
  // A reply that arrived after an earlier timeout would be taken for this request's answer.
  port_->discard_input();
  rx_.clear();
  ++stats_.exchanges;
  port_->write_all(request);

  const auto attempts_text = [attempts] {
      return " (" + std::to_string(attempts) + (attempts == 1 ? " attempt)" : " attempts)");
    };
  const auto timeout_text = [&] {
      char ms[32];
      std::snprintf(ms, sizeof(ms), "%.1f", static_cast<double>(options_.reply_timeout.count()) / 1000.0);
      return std::string(" within ") + ms + " ms" + attempts_text();
    };
  std::vector<Bytes> replies(ids.size());
  std::vector<bool> received(ids.size(), false);
  std::size_t remaining = ids.size();
  auto deadline = Clock::now() + options_.reply_timeout;
  bool saw_bad_checksum = false;
  while (remaining > 0) {
    Packet packet;
    const ParseResult result = parse_packet(rx_, packet);
    if (result == ParseResult::kBadChecksum) {
      saw_bad_checksum = true;
      continue;
    }
    if (result == ParseResult::kIncomplete) {
      if (port_->read_some(rx_, deadline) == 0) {
        // Name the first servo that did not answer.
        const std::size_t missing = static_cast<std::size_t>(
          std::find(received.begin(), received.end(), false) - received.begin());
        const std::uint8_t id = ids[missing];
        if (saw_bad_checksum) {
          throw BusError(
                  id, Fault::kBadChecksum, 0,
                  "servo " + std::to_string(id) + ": reply to " + what + " had a bad checksum" +
                  attempts_text());
        }
        throw BusError(
                id, Fault::kNoReply, 0,
                "servo " + std::to_string(id) + ": no reply to " + what + timeout_text());
      }
      continue;
    }
    const auto it = std::find(ids.begin(), ids.end(), packet.id);
    if (it == ids.end()) {
      continue;  // not addressed to this request: another master's traffic or line noise
    }
    const std::size_t index = static_cast<std::size_t>(it - ids.begin());
    if (received[index]) {
      continue;
    }
    if (packet.params.size() != reply_length) {
      throw BusError(
              packet.id, Fault::kMalformedReply, 0,
              "servo " + std::to_string(packet.id) + ": reply to " + what + " carried " +
              std::to_string(packet.params.size()) + " bytes, expected " + std::to_string(reply_length));
    }
    if (packet.code != 0) {
      throw BusError(
              packet.id, Fault::kStatusError, packet.code,
              "servo " + std::to_string(packet.id) + ": status error in reply to " + what + ": " +
              describe_status_error(packet.code));
    }
    replies[index] = std::move(packet.params);
    received[index] = true;
    --remaining;
    // Each servo of a SYNC_READ answers in turn: give every reply its own timeout.
    deadline = Clock::now() + options_.reply_timeout;
  }
  return replies;
}

}  // namespace so100_driver
