#include "so100_driver/protocol.hpp"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace so100_driver
{

std::string describe_status_error(std::uint8_t error)
{
  static const std::pair<std::uint8_t, const char *> kNames[] = {
    {status_error::kVoltage, "input voltage"},
    {status_error::kAngleSensor, "angle sensor"},
    {status_error::kOverheat, "overheat"},
    {status_error::kOvercurrent, "overcurrent"},
    {status_error::kOverload, "overload"},
  };
  std::string text;
  std::uint8_t known = 0;
  for (const auto & [bit, name] : kNames) {
    known |= bit;
    if (error & bit) {
      text += text.empty() ? "" : ", ";
      text += name;
    }
  }
  if (error & ~known) {
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02x", static_cast<unsigned>(error & ~known));
    text += text.empty() ? "" : ", ";
    text += std::string("unknown bits ") + hex;
  }
  return text;
}

std::uint8_t checksum(const std::uint8_t * begin, const std::uint8_t * end)
{
  unsigned sum = 0;
  for (const std::uint8_t * p = begin; p != end; ++p) {
    sum += *p;
  }
  return static_cast<std::uint8_t>(~sum & 0xFF);
}

namespace
{
Bytes encode(std::uint8_t id, std::uint8_t code, const Bytes & params)
{
  if (params.size() > 250) {
    throw std::length_error("Feetech packet with more than 250 parameter bytes");
  }
  Bytes out;
  out.reserve(params.size() + 6);
  out.push_back(0xFF);
  out.push_back(0xFF);
  out.push_back(id);
  out.push_back(static_cast<std::uint8_t>(params.size() + 2));
  out.push_back(code);
  out.insert(out.end(), params.begin(), params.end());
  out.push_back(checksum(out.data() + 2, out.data() + out.size()));
  return out;
}
}  // namespace

Bytes encode_instruction(std::uint8_t id, std::uint8_t instr, const Bytes & params)
{
  return encode(id, instr, params);
}

Bytes encode_status(std::uint8_t id, std::uint8_t error, const Bytes & params)
{
  return encode(id, error, params);
}

ParseResult parse_packet(Bytes & buffer, Packet & out)
{
  // Resynchronise on the FF FF header; an id of 0xFF is invalid, so FF FF FF means the header
  // starts one byte later.
  std::size_t start = 0;
  while (start + 2 < buffer.size() &&
    !(buffer[start] == 0xFF && buffer[start + 1] == 0xFF && buffer[start + 2] != 0xFF))
  {
    ++start;
  }
  if (start > 0) {
    buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(start));
  }
  if (buffer.size() < 4) {
    return ParseResult::kIncomplete;
  }
  const std::size_t len = buffer[3];
  if (len < 2) {
    // Impossible length: drop the header so the scan moves on.
    buffer.erase(buffer.begin(), buffer.begin() + 2);
    return ParseResult::kBadChecksum;
  }
  const std::size_t total = len + 4;
  if (buffer.size() < total) {
    return ParseResult::kIncomplete;
  }
  const bool ok = checksum(buffer.data() + 2, buffer.data() + total - 1) == buffer[total - 1];
  if (ok) {
    out.id = buffer[2];
    out.code = buffer[4];
    out.params.assign(buffer.begin() + 5, buffer.begin() + static_cast<std::ptrdiff_t>(total - 1));
  }
  buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(total));
  return ok ? ParseResult::kPacket : ParseResult::kBadChecksum;
}

std::uint16_t encode_sign_magnitude(int value, int sign_bit)
{
  const int magnitude = std::abs(value);
  if (magnitude >= (1 << sign_bit)) {
    throw std::out_of_range(
            "value " + std::to_string(value) + " does not fit a sign-magnitude field with sign bit " +
            std::to_string(sign_bit));
  }
  return static_cast<std::uint16_t>(magnitude | (value < 0 ? (1 << sign_bit) : 0));
}

int decode_sign_magnitude(std::uint16_t raw, int sign_bit)
{
  const int magnitude = raw & ((1 << sign_bit) - 1);
  return (raw & (1 << sign_bit)) ? -magnitude : magnitude;
}

}  // namespace so100_driver
