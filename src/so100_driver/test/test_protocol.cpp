// Packet encoding/decoding, checksum and sign-magnitude fields, checked against hand-computed
// packets from the Feetech protocol description.
#include <gtest/gtest.h>

#include <stdexcept>

#include "so100_driver/protocol.hpp"

using so100_driver::Bytes;
using so100_driver::Packet;
using so100_driver::ParseResult;
namespace sd = so100_driver;

TEST(Protocol, PingPacketMatchesTheManual)
{
  EXPECT_EQ(sd::encode_instruction(1, sd::instruction::kPing, {}), (Bytes{0xFF, 0xFF, 0x01, 0x02, 0x01, 0xFB}));
}

TEST(Protocol, ReadPacketChecksumCoversIdLengthInstructionAndParams)
{
  // ~(0x01 + 0x04 + 0x02 + 0x38 + 0x02) & 0xFF = 0xBE
  EXPECT_EQ(
    sd::encode_instruction(1, sd::instruction::kRead, {sd::reg::kPresentPosition, 2}),
    (Bytes{0xFF, 0xFF, 0x01, 0x04, 0x02, 0x38, 0x02, 0xBE}));
}

TEST(Protocol, SyncReadPacketListsEveryId)
{
  const Bytes packet = sd::encode_instruction(
    sd::kBroadcastId, sd::instruction::kSyncRead, {56, 4, 1, 2, 3, 4, 5, 6});
  ASSERT_EQ(packet.size(), 14u);
  EXPECT_EQ(packet[2], 0xFE);
  EXPECT_EQ(packet[3], 10);  // 8 params + 2
  EXPECT_EQ(packet[4], 0x82);
  EXPECT_EQ(packet.back(), sd::checksum(packet.data() + 2, packet.data() + packet.size() - 1));
}

TEST(Protocol, ParsesStatusPacketAfterGarbageAndLeavesTheRest)
{
  const Bytes status = sd::encode_status(3, 0x00, {0x00, 0x08});
  Bytes buffer{0x12, 0xFF, 0x00};  // line noise, including a lone 0xFF
  buffer.insert(buffer.end(), status.begin(), status.end());
  buffer.push_back(0xFF);  // start of the next packet
  Packet packet;
  ASSERT_EQ(sd::parse_packet(buffer, packet), ParseResult::kPacket);
  EXPECT_EQ(packet.id, 3);
  EXPECT_EQ(packet.code, 0);
  EXPECT_EQ(packet.params, (Bytes{0x00, 0x08}));
  EXPECT_EQ(buffer, Bytes{0xFF});
  EXPECT_EQ(sd::parse_packet(buffer, packet), ParseResult::kIncomplete);
}

TEST(Protocol, TripleFfHeaderStartsOneByteLater)
{
  Bytes buffer{0xFF};
  const Bytes status = sd::encode_status(1, 0, {});
  buffer.insert(buffer.end(), status.begin(), status.end());
  Packet packet;
  ASSERT_EQ(sd::parse_packet(buffer, packet), ParseResult::kPacket);
  EXPECT_EQ(packet.id, 1);
  EXPECT_TRUE(buffer.empty());
}

TEST(Protocol, DetectsCorruptedChecksumAndConsumesThePacket)
{
  Bytes buffer = sd::encode_status(2, 0, {0x10, 0x20});
  buffer.back() ^= 0x01;
  const Bytes next = sd::encode_status(4, 0, {});
  buffer.insert(buffer.end(), next.begin(), next.end());
  Packet packet;
  EXPECT_EQ(sd::parse_packet(buffer, packet), ParseResult::kBadChecksum);
  ASSERT_EQ(sd::parse_packet(buffer, packet), ParseResult::kPacket);
  EXPECT_EQ(packet.id, 4);
}

TEST(Protocol, IncompletePacketWaitsForMoreBytes)
{
  const Bytes status = sd::encode_status(5, 0, {1, 2, 3, 4});
  Bytes buffer(status.begin(), status.end() - 1);
  Packet packet;
  EXPECT_EQ(sd::parse_packet(buffer, packet), ParseResult::kIncomplete);
  EXPECT_EQ(buffer.size(), status.size() - 1);
  buffer.push_back(status.back());
  EXPECT_EQ(sd::parse_packet(buffer, packet), ParseResult::kPacket);
}

TEST(Protocol, SignMagnitudeUsesTheRegistersSignBit)
{
  EXPECT_EQ(sd::encode_sign_magnitude(-300, sd::sign_bit::kHomingOffset), 0x800 | 300);
  EXPECT_EQ(sd::encode_sign_magnitude(300, sd::sign_bit::kHomingOffset), 300);
  EXPECT_EQ(sd::encode_sign_magnitude(-1, sd::sign_bit::kSpeed), 0x8001);
  EXPECT_EQ(sd::decode_sign_magnitude(0x8000 | 1200, sd::sign_bit::kSpeed), -1200);
  EXPECT_EQ(sd::decode_sign_magnitude(0x0400 | 55, sd::sign_bit::kLoad), -55);
  // Two's complement would read 0xFFFF as -1; sign-magnitude reads it as -32767.
  EXPECT_EQ(sd::decode_sign_magnitude(0xFFFF, sd::sign_bit::kSpeed), -32767);
  EXPECT_THROW(sd::encode_sign_magnitude(2048, sd::sign_bit::kHomingOffset), std::out_of_range);
  EXPECT_THROW(sd::encode_sign_magnitude(-2048, sd::sign_bit::kHomingOffset), std::out_of_range);
  for (int value = -2047; value <= 2047; ++value) {
    ASSERT_EQ(sd::decode_sign_magnitude(sd::encode_sign_magnitude(value, 11), 11), value);
  }
}

TEST(Protocol, DescribesStatusErrorBits)
{
  EXPECT_EQ(sd::describe_status_error(sd::status_error::kOverheat | sd::status_error::kOverload), "overheat, overload");
  EXPECT_EQ(sd::describe_status_error(sd::status_error::kVoltage), "input voltage");
  EXPECT_EQ(sd::describe_status_error(0x40), "unknown bits 0x40");
}
