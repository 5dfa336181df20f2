#include "so100_driver/json.hpp"

#include <cctype>
#include <charconv>
#include <system_error>

namespace so100_driver::json
{

const Object & Value::as_object() const
{
  if (!is_object()) {
    throw std::runtime_error("JSON value is not an object");
  }
  return std::get<Object>(data);
}

double Value::as_number() const
{
  if (!is_number()) {
    throw std::runtime_error("JSON value is not a number");
  }
  return std::get<double>(data);
}

namespace
{

class Parser
{
public:
  explicit Parser(const std::string & text)
  : text_(text) {}

  Value document()
  {
    Value value = parse_value(0);
    skip_space();
    if (pos_ != text_.size()) {
      fail("trailing characters after the JSON value");
    }
    return value;
  }

private:
  // Nesting bound: a hostile file must not exhaust the stack.
  static constexpr int kMaxDepth = 64;

  [[noreturn]] void fail(const std::string & message) const
  {
    throw ParseError("JSON error at byte " + std::to_string(pos_) + ": " + message);
  }

  void skip_space()
  {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
      text_[pos_] == '\n' || text_[pos_] == '\r'))
    {
      ++pos_;
    }
  }

  bool consume(char c)
  {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  void expect(char c)
  {
    if (!consume(c)) {
      fail(std::string("expected '") + c + "'");
    }
  }

  void literal(const char * word)
  {
    for (const char * p = word; *p; ++p, ++pos_) {
      if (pos_ >= text_.size() || text_[pos_] != *p) {
        fail(std::string("invalid literal, expected ") + word);
      }
    }
  }

  Value parse_value(int depth)
  {
    if (depth > kMaxDepth) {
      fail("nesting deeper than 64 levels");
    }
    skip_space();
    if (pos_ >= text_.size()) {
      fail("unexpected end of input");
    }
    const char c = text_[pos_];
    if (c == '{') {
      return Value{parse_object(depth)};
    }
    if (c == '[') {
      return Value{parse_array(depth)};
    }
    if (c == '"') {
      return Value{parse_string()};
    }
    if (c == 't') {
      literal("true");
      return Value{true};
    }
    if (c == 'f') {
      literal("false");
      return Value{false};
    }
    if (c == 'n') {
      literal("null");
      return Value{nullptr};
    }
    if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      return Value{parse_number()};
    }
    fail(std::string("unexpected character '") + c + "'");
  }

  Object parse_object(int depth)
  {
    expect('{');
    Object object;
    if (consume('}')) {
      return object;
    }
    do {
      skip_space();
      if (pos_ >= text_.size() || text_[pos_] != '"') {
        fail("expected a string key");
      }
      std::string key = parse_string();
      expect(':');
      if (object.count(key)) {
        fail("duplicate key \"" + key + "\"");
      }
      object.emplace(std::move(key), parse_value(depth + 1));
    } while (consume(','));
    expect('}');
    return object;
  }

  Array parse_array(int depth)
  {
    expect('[');
    Array array;
    if (consume(']')) {
      return array;
    }
    do {
      array.push_back(parse_value(depth + 1));
    } while (consume(','));
    expect(']');
    return array;
  }

  std::string parse_string()
  {
    ++pos_;  // opening quote
    std::string out;
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') {
        return out;
      }
      if (static_cast<unsigned char>(c) < 0x20) {
        fail("control character inside a string");
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) {
        break;
      }
      const char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': append_utf8(out, parse_hex4()); break;
        default: fail(std::string("invalid escape \\") + e);
      }
    }
    fail("unterminated string");
  }

  unsigned parse_hex4()
  {
    if (pos_ + 4 > text_.size()) {
      fail("truncated \\u escape");
    }
    unsigned code = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = text_[pos_++];
      code <<= 4;
      if (h >= '0' && h <= '9') {
        code |= static_cast<unsigned>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        code |= static_cast<unsigned>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        code |= static_cast<unsigned>(h - 'A' + 10);
      } else {
        fail("invalid hex digit in \\u escape");
      }
    }
    return code;
  }

  static void append_utf8(std::string & out, unsigned code)
  {
    // Surrogate pairs are not combined: calibration keys are ASCII motor names.
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else if (code < 0x800) {
      out += static_cast<char>(0xC0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
      out += static_cast<char>(0xE0 | (code >> 12));
      out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (code & 0x3F));
    }
  }

  double parse_number()
  {
    const std::size_t start = pos_;
    if (text_[pos_] == '-') {
      ++pos_;
    }
    const auto digits = [this] {
        const std::size_t from = pos_;
        while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
          ++pos_;
        }
        return pos_ - from;
      };
    if (pos_ < text_.size() && text_[pos_] == '0') {
      ++pos_;
    } else if (digits() == 0) {
      fail("invalid number");
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      if (digits() == 0) {
        fail("invalid number: digits expected after '.'");
      }
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) {
        ++pos_;
      }
      if (digits() == 0) {
        fail("invalid number: digits expected in exponent");
      }
    }
    // from_chars ignores the C locale (strtod would read "0.5" as 0 under a comma locale).
    double value = 0.0;
    const auto result = std::from_chars(text_.data() + start, text_.data() + pos_, value);
    if (result.ec != std::errc()) {
      fail("number out of range");
    }
    return value;
  }

  const std::string & text_;
  std::size_t pos_ = 0;
};

}  // namespace

Value parse(const std::string & text)
{
  return Parser(text).document();
}

}  // namespace so100_driver::json
