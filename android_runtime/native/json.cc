#include "json.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace nnsplice {

class JsonParser {
 public:
  explicit JsonParser(const std::string& t) : t_(t) {}

  Json Document() {
    Json v = Value(0);
    Space();
    if (i_ != t_.size()) Fail("trailing characters after the JSON value");
    return v;
  }

 private:
  const std::string& t_;
  size_t i_ = 0;

  [[noreturn]] void Fail(const std::string& why) {
    throw std::runtime_error("offset " + std::to_string(i_) + ": " + why);
  }
  void Space() {
    while (i_ < t_.size() && (t_[i_] == ' ' || t_[i_] == '\n' || t_[i_] == '\t' || t_[i_] == '\r')) ++i_;
  }
  void Expect(char c) {
    Space();
    if (i_ >= t_.size() || t_[i_] != c) Fail(std::string("expected '") + c + "'");
    ++i_;
  }
  bool Literal(const char* word) {
    size_t n = std::char_traits<char>::length(word);
    if (t_.compare(i_, n, word) == 0) {
      i_ += n;
      return true;
    }
    return false;
  }

  Json Value(int depth) {
    if (depth > 64) Fail("nested too deeply");
    Space();
    if (i_ >= t_.size()) Fail("unexpected end of input");
    Json v;
    char c = t_[i_];
    if (c == '{') {
      v.type_ = Json::Type::kObject;
      ++i_;
      Space();
      if (i_ < t_.size() && t_[i_] == '}') {
        ++i_;
        return v;
      }
      while (true) {
        Space();
        if (i_ >= t_.size() || t_[i_] != '"') Fail("expected a string key");
        std::string key = String();
        Expect(':');
        v.object_.emplace_back(key, Value(depth + 1));
        Space();
        if (i_ < t_.size() && t_[i_] == ',') {
          ++i_;
          continue;
        }
        Expect('}');
        return v;
      }
    }
    if (c == '[') {
      v.type_ = Json::Type::kArray;
      ++i_;
      Space();
      if (i_ < t_.size() && t_[i_] == ']') {
        ++i_;
        return v;
      }
      while (true) {
        v.array_.push_back(Value(depth + 1));
        Space();
        if (i_ < t_.size() && t_[i_] == ',') {
          ++i_;
          continue;
        }
        Expect(']');
        return v;
      }
    }
    if (c == '"') {
      v.type_ = Json::Type::kString;
      v.string_ = String();
      return v;
    }
    if (Literal("true")) {
      v.type_ = Json::Type::kBool;
      v.bool_ = true;
      return v;
    }
    if (Literal("false")) {
      v.type_ = Json::Type::kBool;
      return v;
    }
    if (Literal("null")) return v;
    if (c == '-' || (c >= '0' && c <= '9')) {
      const char* start = t_.c_str() + i_;
      char* end = nullptr;
      v.number_ = std::strtod(start, &end);
      if (end == start) Fail("bad number");
      i_ += static_cast<size_t>(end - start);
      v.type_ = Json::Type::kNumber;
      return v;
    }
    Fail(std::string("unexpected character '") + c + "'");
  }

  std::string String() {
    ++i_;  // opening quote
    std::string out;
    while (true) {
      if (i_ >= t_.size()) Fail("unterminated string");
      char c = t_[i_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= t_.size()) Fail("unterminated escape");
      char e = t_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          if (i_ + 4 > t_.size()) Fail("bad \\u escape");
          unsigned cp = static_cast<unsigned>(std::strtoul(t_.substr(i_, 4).c_str(), nullptr, 16));
          i_ += 4;
          if (cp >= 0xD800 && cp < 0xDC00 && i_ + 6 <= t_.size() && t_[i_] == '\\' && t_[i_ + 1] == 'u') {
            unsigned lo = static_cast<unsigned>(std::strtoul(t_.substr(i_ + 2, 4).c_str(), nullptr, 16));
            i_ += 6;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          Utf8(cp, &out);
          break;
        }
        default: Fail(std::string("bad escape \\") + e);
      }
    }
  }

  static void Utf8(unsigned cp, std::string* out) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xC0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xE0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *out += static_cast<char>(0xF0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
};

Json Json::Parse(const std::string& text) { return JsonParser(text).Document(); }

const char* Json::type_name() const {
  switch (type_) {
    case Type::kNull: return "null";
    case Type::kBool: return "a boolean";
    case Type::kNumber: return "a number";
    case Type::kString: return "a string";
    case Type::kArray: return "an array";
    case Type::kObject: return "an object";
  }
  return "?";
}

const Json* Json::find(const std::string& key) const {
  for (const auto& kv : object_) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

std::string JsonQuote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double v, int digits) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  if (v == std::floor(v) && std::fabs(v) < 1e15) {
    std::snprintf(buf, sizeof buf, "%.1f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  }
  return buf;
}

}  // namespace nnsplice
