#include "tflite_check.h"

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace nnsplice {
namespace {

// Field ids of the TFLite schema (tensorflow/compiler/mlir/lite/schema/schema.fbs).
enum ModelField { kVersion = 0, kSubgraphs = 2, kBuffers = 4, kSignatureDefs = 7 };
enum SubgraphField { kTensors = 0, kInputs = 1, kOutputs = 2, kOperators = 3 };
enum TensorField { kShape = 0, kBuffer = 2, kName = 3 };
enum OperatorField { kOpInputs = 1, kOpOutputs = 2, kBuiltinOptions = 4, kCustomOptions = 5 };
enum BufferField { kData = 0, kOffset = 1, kSize = 2 };
enum SignatureField { kSigInputs = 0, kSigOutputs = 1, kSigKey = 2 };

class Bad : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Flatbuffer {
 public:
  Flatbuffer(const uint8_t* b, size_t n) : b_(b), n_(n) {}

  template <typename T>
  T Read(size_t at, const std::string& what) const {
    if (at > n_ || n_ - at < sizeof(T)) throw Bad(what + " ends past the file");
    T v;
    std::memcpy(&v, b_ + at, sizeof(T));
    return v;
  }
  // Checks the table at `pos` and its vtable; returns `pos`.
  size_t Table(size_t pos, const std::string& what) const {
    int32_t back = Read<int32_t>(pos, what);
    int64_t vt = static_cast<int64_t>(pos) - back;
    if (vt < 0 || static_cast<size_t>(vt) >= n_) throw Bad(what + " has its vtable outside the file");
    uint16_t vt_len = Read<uint16_t>(static_cast<size_t>(vt), what + " vtable");
    uint16_t obj_len = Read<uint16_t>(static_cast<size_t>(vt) + 2, what + " vtable");
    if (static_cast<size_t>(vt) + vt_len > n_ || pos + obj_len > n_) throw Bad(what + " ends past the file");
    return pos;
  }
  // Position of field `id` of a table, or 0 when absent.
  size_t Field(size_t table, int id, const std::string& what) const {
    size_t vt = table - static_cast<size_t>(Read<int32_t>(table, what));
    uint16_t vt_len = Read<uint16_t>(vt, what);
    size_t slot = 4 + 2 * static_cast<size_t>(id);
    if (slot + 2 > vt_len) return 0;
    uint16_t off = Read<uint16_t>(vt + slot, what);
    return off ? table + off : 0;
  }
  // Follows the uoffset stored at `pos`.
  size_t Deref(size_t pos, const std::string& what) const { return pos + Read<uint32_t>(pos, what); }
  // A vector at `pos` of `count` elements of `width` bytes; returns its element count.
  uint32_t Vector(size_t pos, size_t width, const std::string& what) const {
    uint32_t count = Read<uint32_t>(pos, what);
    if ((n_ - pos - 4) / width < count) throw Bad(what + " ends past the file");
    return count;
  }
  // The vector of tables in field `id` (checking every table); calls `each(i, table)`.
  template <typename F>
  uint32_t Tables(size_t table, int id, const std::string& what, F each) const {
    size_t f = Field(table, id, what);
    if (!f) return 0;
    size_t v = Deref(f, what);
    uint32_t count = Vector(v, 4, what);
    for (uint32_t i = 0; i < count; ++i) {
      std::string w = what + "[" + std::to_string(i) + "]";
      each(i, Table(Deref(v + 4 + 4 * i, w), w));
    }
    return count;
  }
  // Checks a scalar vector (or string) in field `id`; returns its count.
  uint32_t Scalars(size_t table, int id, size_t width, const std::string& what) const {
    size_t f = Field(table, id, what);
    return f ? Vector(Deref(f, what), width, what) : 0;
  }
  size_t size() const { return n_; }

 private:
  const uint8_t* b_;
  size_t n_;
};

void Walk(const Flatbuffer& fb) {
  if (fb.size() < 8) throw Bad("the file is shorter than a flatbuffer header");
  size_t model = fb.Table(fb.Read<uint32_t>(0, "root offset"), "the model table");
  size_t vf = fb.Field(model, kVersion, "version");
  uint32_t version = vf ? fb.Read<uint32_t>(vf, "version") : 0;
  if (version != 3) throw Bad("schema version " + std::to_string(version) + ", not 3");
  uint32_t n_buffers = fb.Tables(model, kBuffers, "buffers", [&](uint32_t i, size_t buf) {
    std::string w = "buffers[" + std::to_string(i) + "]";
    fb.Scalars(buf, kData, 1, w + " data");
    size_t of = fb.Field(buf, kOffset, w), sf = fb.Field(buf, kSize, w);
    uint64_t offset = of ? fb.Read<uint64_t>(of, w) : 0, size = sf ? fb.Read<uint64_t>(sf, w) : 0;
    if (offset > 1 && (offset > fb.size() || fb.size() - offset < size)) throw Bad(w + " data ends past the file");
  });
  uint32_t n_subgraphs = fb.Tables(model, kSubgraphs, "subgraphs", [&](uint32_t s, size_t sg) {
    std::string w = "subgraphs[" + std::to_string(s) + "]";
    uint32_t n_tensors = fb.Tables(sg, kTensors, w + ".tensors", [&](uint32_t t, size_t tensor) {
      std::string tw = w + ".tensors[" + std::to_string(t) + "]";
      fb.Scalars(tensor, kShape, 4, tw + ".shape");
      fb.Scalars(tensor, kName, 1, tw + ".name");
      size_t bf = fb.Field(tensor, kBuffer, tw);
      if (bf && fb.Read<uint32_t>(bf, tw) >= n_buffers && n_buffers > 0) throw Bad(tw + " names a missing buffer");
    });
    fb.Scalars(sg, kInputs, 4, w + ".inputs");
    fb.Scalars(sg, kOutputs, 4, w + ".outputs");
    fb.Tables(sg, kOperators, w + ".operators", [&](uint32_t o, size_t op) {
      std::string ow = w + ".operators[" + std::to_string(o) + "]";
      for (int field : {kOpInputs, kOpOutputs}) {
        size_t f = fb.Field(op, field, ow);
        if (!f) continue;
        size_t v = fb.Deref(f, ow);
        uint32_t count = fb.Vector(v, 4, ow + " tensors");
        for (uint32_t k = 0; k < count; ++k) {
          int32_t idx = fb.Read<int32_t>(v + 4 + 4 * k, ow);
          if (idx >= static_cast<int32_t>(n_tensors)) throw Bad(ow + " uses tensor " + std::to_string(idx) + " of " +
                                                                std::to_string(n_tensors));
        }
      }
      size_t opts = fb.Field(op, kBuiltinOptions, ow);
      if (opts) fb.Table(fb.Deref(opts, ow), ow + " options");
      fb.Scalars(op, kCustomOptions, 1, ow + " custom options");
    });
  });
  if (n_subgraphs == 0) throw Bad("no subgraph");
  fb.Tables(model, kSignatureDefs, "signature_defs", [&](uint32_t i, size_t sig) {
    std::string w = "signature_defs[" + std::to_string(i) + "]";
    for (int field : {kSigInputs, kSigOutputs}) {
      fb.Tables(sig, field, w, [&](uint32_t, size_t map) { fb.Scalars(map, 0, 1, w + " tensor name"); });
    }
    fb.Scalars(sig, kSigKey, 1, w + ".signature_key");
  });
}

}  // namespace

std::string CheckTflite(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return "not readable";
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string b = ss.str();
  if (b.size() < 8 || b.compare(4, 4, "TFL3") != 0) return "no TFL3 identifier in bytes 4-8: not a TFLite model";
  try {
    Walk(Flatbuffer(reinterpret_cast<const uint8_t*>(b.data()), b.size()));
  } catch (const Bad& e) {
    return e.what();
  }
  return "";
}

}  // namespace nnsplice
