// A small JSON reader (enough for plan.json: objects, arrays, strings, numbers, true/false/null)
// and a writer helper. Parse errors name the offset; type errors are raised by the callers, which
// know the file and key.
#ifndef NNSPLICE_NATIVE_JSON_H_
#define NNSPLICE_NATIVE_JSON_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace nnsplice {

class Json {
 public:
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };

  // Parses `text`; throws std::runtime_error("offset N: ...") on malformed input.
  static Json Parse(const std::string& text);

  Type type() const { return type_; }
  bool is(Type t) const { return type_ == t; }
  const char* type_name() const;

  bool as_bool() const { return bool_; }
  double as_number() const { return number_; }
  const std::string& as_string() const { return string_; }
  const std::vector<Json>& as_array() const { return array_; }
  // Object members in file order (JSON objects of the plan keep their order: lanes, for one).
  const std::vector<std::pair<std::string, Json>>& as_object() const { return object_; }
  // The member `key` of an object, or nullptr.
  const Json* find(const std::string& key) const;

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  double number_ = 0;
  std::string string_;
  std::vector<Json> array_;
  std::vector<std::pair<std::string, Json>> object_;
  friend class JsonParser;
};

// `s` as a JSON string literal (quotes and escapes included).
std::string JsonQuote(const std::string& s);
// A number as JSON: integers without a fraction, others with up to `digits` decimals.
std::string JsonNumber(double v, int digits = 3);

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_JSON_H_
