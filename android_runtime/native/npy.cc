#include "npy.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "errors.h"

namespace nnsplice {
namespace {

std::string Between(const std::string& h, const std::string& key) {
  size_t k = h.find("'" + key + "'");
  if (k == std::string::npos) return "";
  size_t colon = h.find(':', k);
  if (colon == std::string::npos) return "";
  size_t start = h.find_first_not_of(' ', colon + 1);
  if (start == std::string::npos) return "";
  char open = h[start];
  if (open == '\'' || open == '(') {
    size_t end = h.find(open == '\'' ? '\'' : ')', start + 1);
    return end == std::string::npos ? "" : h.substr(start + 1, end - start - 1);
  }
  size_t end = h.find_first_of(",}", start);
  return h.substr(start, end - start);
}

}  // namespace

NpyArray ReadNpy(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UserError("--input " + path + ": file not found or not readable");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string b = ss.str();
  if (b.size() < 10 || b.compare(0, 6, "\x93NUMPY") != 0) throw UserError("--input " + path + ": not a .npy file");
  int major = static_cast<unsigned char>(b[6]);
  size_t hlen, hstart;
  if (major == 1) {
    hlen = static_cast<unsigned char>(b[8]) | (static_cast<unsigned char>(b[9]) << 8);
    hstart = 10;
  } else {
    if (b.size() < 12) throw UserError("--input " + path + ": truncated .npy header");
    hlen = 0;
    for (int i = 0; i < 4; ++i) hlen |= static_cast<size_t>(static_cast<unsigned char>(b[8 + i])) << (8 * i);
    hstart = 12;
  }
  if (hstart + hlen > b.size()) throw UserError("--input " + path + ": truncated .npy header");
  std::string h = b.substr(hstart, hlen);
  std::string descr = Between(h, "descr"), order = Between(h, "fortran_order"), shape = Between(h, "shape");
  if (order.find("False") == std::string::npos) throw UserError("--input " + path + ": Fortran-order arrays are not read; save with np.save(np.ascontiguousarray(x))");
  if (descr != "<f4" && descr != "<f8") {
    throw UserError("--input " + path + ": dtype " + descr + ", the runner reads float32 (<f4) or float64 (<f8)");
  }
  NpyArray a;
  size_t n = 1;
  std::stringstream dims(shape);
  std::string tok;
  while (std::getline(dims, tok, ',')) {
    size_t s = tok.find_first_not_of(' ');
    if (s == std::string::npos) continue;
    int64_t d = std::stoll(tok.substr(s));
    a.shape.push_back(d);
    n *= static_cast<size_t>(d);
  }
  size_t width = descr == "<f4" ? 4 : 8;
  size_t start = hstart + hlen;
  if (b.size() - start != n * width) {
    throw UserError("--input " + path + ": holds " + std::to_string(b.size() - start) + " data bytes, its shape needs " +
                    std::to_string(n * width));
  }
  a.data.resize(n);
  if (width == 4) {
    std::memcpy(a.data.data(), b.data() + start, n * 4);
  } else {
    for (size_t i = 0; i < n; ++i) {
      double v;
      std::memcpy(&v, b.data() + start + 8 * i, 8);
      a.data[i] = static_cast<float>(v);
    }
  }
  return a;
}

void WriteNpy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
  std::string dims;
  size_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += (i ? ", " : "") + std::to_string(shape[i]);
    n *= static_cast<size_t>(shape[i]);
  }
  if (shape.size() == 1) dims += ",";  // a 1-tuple
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
  size_t total = 10 + header.size() + 1;
  header += std::string((64 - total % 64) % 64, ' ') + "\n";
  std::ofstream f(path, std::ios::binary);
  if (!f) throw InternalError("cannot write " + path);
  f.write("\x93NUMPY\x01\x00", 8);
  uint16_t hl = static_cast<uint16_t>(header.size());
  char len[2] = {static_cast<char>(hl & 0xFF), static_cast<char>(hl >> 8)};
  f.write(len, 2);
  f << header;
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(n * 4));
  if (!f) throw InternalError("cannot write " + path);
}

}  // namespace nnsplice
