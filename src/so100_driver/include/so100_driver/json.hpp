// A minimal JSON reader (RFC 8259 values; \u escapes outside ASCII are kept as UTF-8) for the
// calibration files: small, strict, and with error messages that give the byte offset.
#ifndef SO100_DRIVER__JSON_HPP_
#define SO100_DRIVER__JSON_HPP_

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace so100_driver::json
{

/// A parse error with the byte offset where it was found.
class ParseError : public std::runtime_error
{
public:
  using std::runtime_error::runtime_error;
};

struct Value;
using Object = std::map<std::string, Value>;
using Array = std::vector<Value>;

/// One JSON value. Numbers are doubles (calibration values are integers well inside 2^53).
struct Value
{
  std::variant<std::nullptr_t, bool, double, std::string, Array, Object> data;

  bool is_object() const {return std::holds_alternative<Object>(data);}
  bool is_number() const {return std::holds_alternative<double>(data);}
  const Object & as_object() const;
  double as_number() const;
};

/// Parse a complete JSON document; throws ParseError on any syntax error or trailing garbage.
Value parse(const std::string & text);

}  // namespace so100_driver::json

#endif  // SO100_DRIVER__JSON_HPP_
