// Feetech STS/SMS serial protocol (STS3215): packet layout, instruction codes, control table
// addresses and the sign-magnitude encoding some registers use. Pure functions, no I/O.
#ifndef SO100_DRIVER__PROTOCOL_HPP_
#define SO100_DRIVER__PROTOCOL_HPP_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace so100_driver
{

using Bytes = std::vector<std::uint8_t>;

/// Instruction codes of the Feetech protocol (the byte after LEN in an instruction packet).
namespace instruction
{
constexpr std::uint8_t kPing = 0x01;
constexpr std::uint8_t kRead = 0x02;
constexpr std::uint8_t kWrite = 0x03;
constexpr std::uint8_t kRegWrite = 0x04;
constexpr std::uint8_t kAction = 0x05;
constexpr std::uint8_t kReset = 0x06;
constexpr std::uint8_t kSyncRead = 0x82;
constexpr std::uint8_t kSyncWrite = 0x83;
}  // namespace instruction

/// STS3215 control table addresses (bytes). Addresses below kEepromEnd live in EEPROM and
/// are only written while the lock register is 0.
namespace reg
{
constexpr std::uint8_t kModelNumber = 3;         // 2 bytes, STS3215 = 777
constexpr std::uint8_t kId = 5;
constexpr std::uint8_t kBaudRate = 6;            // code 0 = 1,000,000 baud
constexpr std::uint8_t kReturnDelay = 7;
constexpr std::uint8_t kResponseStatusLevel = 8;  // 0: reply to PING/READ only, 1: to all
constexpr std::uint8_t kMinAngleLimit = 9;       // 2 bytes
constexpr std::uint8_t kMaxAngleLimit = 11;      // 2 bytes
constexpr std::uint8_t kMaxTorqueLimit = 16;     // 2 bytes, 0.1 %
constexpr std::uint8_t kPGain = 21;
constexpr std::uint8_t kDGain = 22;
constexpr std::uint8_t kIGain = 23;
constexpr std::uint8_t kProtectionCurrent = 28;  // 2 bytes
constexpr std::uint8_t kHomingOffset = 31;       // 2 bytes, sign bit 11
constexpr std::uint8_t kOperatingMode = 33;      // 0 = position
constexpr std::uint8_t kOverloadTorque = 36;     // %
constexpr std::uint8_t kEepromEnd = 40;
constexpr std::uint8_t kTorqueEnable = 40;       // 0 off, 1 on, 128 = re-zero to 2048
constexpr std::uint8_t kAcceleration = 41;
constexpr std::uint8_t kGoalPosition = 42;       // 2 bytes, sign bit 15
constexpr std::uint8_t kGoalTime = 44;           // 2 bytes
constexpr std::uint8_t kGoalSpeed = 46;          // 2 bytes, sign bit 15
constexpr std::uint8_t kLock = 55;               // 0 = EEPROM writable
constexpr std::uint8_t kPresentPosition = 56;    // 2 bytes
constexpr std::uint8_t kPresentSpeed = 58;       // 2 bytes, sign bit 15
constexpr std::uint8_t kPresentLoad = 60;        // 2 bytes, sign bit 10
constexpr std::uint8_t kPresentVoltage = 62;     // 0.1 V
constexpr std::uint8_t kPresentTemperature = 63; // deg C
constexpr std::uint8_t kMoving = 66;
constexpr std::uint8_t kPresentCurrent = 69;     // 2 bytes
constexpr std::size_t kTableSize = 256;
}  // namespace reg

/// Sign bit positions of the sign-magnitude registers.
namespace sign_bit
{
constexpr int kHomingOffset = 11;
constexpr int kGoalPosition = 15;
constexpr int kSpeed = 15;
constexpr int kLoad = 10;
}  // namespace sign_bit

constexpr std::uint8_t kBroadcastId = 0xFE;
constexpr std::uint16_t kSts3215ModelNumber = 777;
constexpr int kTicksPerTurn = 4096;

/// Bits of the status packet's error byte.
namespace status_error
{
constexpr std::uint8_t kVoltage = 0x01;
constexpr std::uint8_t kAngleSensor = 0x02;
constexpr std::uint8_t kOverheat = 0x04;
constexpr std::uint8_t kOvercurrent = 0x08;
constexpr std::uint8_t kOverload = 0x20;
}  // namespace status_error

/// Human-readable names of the bits set in a status error byte, e.g. "overheat, overload".
std::string describe_status_error(std::uint8_t error);

/// ~(sum of bytes) & 0xFF over ID, LEN, INSTR/ERR and parameters (i.e. everything after FF FF).
std::uint8_t checksum(const std::uint8_t * begin, const std::uint8_t * end);

/// Build `FF FF id len instr params... chk`.
Bytes encode_instruction(std::uint8_t id, std::uint8_t instr, const Bytes & params);

/// Build a status packet `FF FF id len err params... chk` (what a servo sends).
Bytes encode_status(std::uint8_t id, std::uint8_t error, const Bytes & params);

/// A decoded packet: for instructions `code` is the instruction, for status packets the error byte.
struct Packet
{
  std::uint8_t id = 0;
  std::uint8_t code = 0;
  Bytes params;
};

/// Outcome of scanning a byte buffer for one packet.
enum class ParseResult { kIncomplete, kPacket, kBadChecksum };

/// Find the first packet in `buffer`, dropping garbage before the FF FF header. On kPacket or
/// kBadChecksum the packet's bytes are removed from `buffer`; on kIncomplete nothing useful is lost.
ParseResult parse_packet(Bytes & buffer, Packet & out);

/// Encode `value` as sign-magnitude with the sign at bit `sign_bit`; throws std::out_of_range if
/// the magnitude does not fit below the sign bit.
std::uint16_t encode_sign_magnitude(int value, int sign_bit);

/// Decode a sign-magnitude register value (bits above the sign bit are ignored).
int decode_sign_magnitude(std::uint16_t raw, int sign_bit);

/// Little-endian helpers for register values.
inline std::uint16_t le16(const std::uint8_t * p) {return static_cast<std::uint16_t>(p[0] | (p[1] << 8));}
inline void put_le16(Bytes & out, std::uint16_t v)
{
  out.push_back(static_cast<std::uint8_t>(v & 0xFF));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
}

}  // namespace so100_driver

#endif  // SO100_DRIVER__PROTOCOL_HPP_
