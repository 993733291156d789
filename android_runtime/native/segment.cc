#include "segment.h"

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>

#include "errors.h"
#include "sha256.h"
#include "tflite_check.h"

namespace nnsplice {
namespace {

std::string ShapeText(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}

std::vector<int64_t> Dims(const LiteRtRankedTensorType& t) {
  std::vector<int64_t> d;
  for (unsigned i = 0; i < t.layout.rank; ++i) d.push_back(t.layout.dimensions[i]);
  return d;
}

// The numeric tail of a signature output name ("output_3" -> 3), as runner._output_pos.
int OutputPos(const std::string& name) {
  size_t u = name.rfind('_');
  std::string tail = u == std::string::npos ? name : name.substr(u + 1);
  if (tail.empty() || tail.find_first_not_of("0123456789") != std::string::npos) return 0;
  return std::atoi(tail.c_str());
}

const char* HwName(int hw) {
  return (hw & kLiteRtHwAcceleratorGpu) ? "gpu" : (hw & kLiteRtHwAcceleratorNpu) ? "npu" : "cpu";
}

void FreePayload(void* p) { std::free(p); }

}  // namespace

Slot* FindSlot(const std::vector<std::unique_ptr<Slot>>& slots, const std::string& name) {
  for (const auto& s : slots) {
    if (s->spec.name == name) return s.get();
  }
  throw InternalError("no tensor " + name);
}

void DestroySlotBuffers(const LiteRtApi& api, const std::vector<std::unique_ptr<Slot>>& slots) {
  for (const auto& s : slots) {
    if (s->buffer) api.DestroyTensorBuffer(s->buffer);
    s->buffer = nullptr;
  }
}

std::unique_ptr<Slot> MakeSlot(const LiteRtApi& api, LiteRtEnvironment env, const TensorSpec& t) {
  auto s = std::make_unique<Slot>();
  s->spec = t;
  s->elements = 1;
  for (int64_t d : t.shape) s->elements *= static_cast<size_t>(d);
  LiteRtRankedTensorType& type = s->type;
  type.element_type = kLiteRtElementTypeFloat32;
  type.layout.rank = static_cast<unsigned>(t.shape.size());
  for (size_t i = 0; i < t.shape.size() && i < kLitertTensorMaxRank; ++i) {
    type.layout.dimensions[i] = static_cast<int32_t>(t.shape[i]);
  }
  Check(api.CreateManagedTensorBuffer(env, kLiteRtTensorBufferTypeHostMemory, &type, s->elements * sizeof(float),
                                      &s->buffer),
        "LiteRtCreateManagedTensorBuffer", "tensor " + t.name);
  Check(api.GetTensorBufferHostMemory(s->buffer, &s->host), "LiteRtGetTensorBufferHostMemory", "tensor " + t.name);
  return s;
}

void WriteSlot(const LiteRtApi& api, Slot& slot, const std::vector<float>& x) {
  if (x.size() != slot.elements) {
    throw InternalError("tensor " + slot.spec.name + " takes " + std::to_string(slot.elements) + " values, not " +
                        std::to_string(x.size()));
  }
  void* p = nullptr;
  Check(api.LockTensorBuffer(slot.buffer, &p, kLiteRtTensorBufferLockModeWrite), "LiteRtLockTensorBuffer",
        slot.spec.name);
  std::memcpy(p, x.data(), x.size() * sizeof(float));
  Check(api.UnlockTensorBuffer(slot.buffer), "LiteRtUnlockTensorBuffer", slot.spec.name);
}

std::vector<float> ReadSlot(const LiteRtApi& api, const Slot& slot) {
  std::vector<float> out(slot.elements);
  void* p = nullptr;
  Check(api.LockTensorBuffer(slot.buffer, &p, kLiteRtTensorBufferLockModeRead), "LiteRtLockTensorBuffer",
        slot.spec.name);
  std::memcpy(out.data(), p, out.size() * sizeof(float));
  Check(api.UnlockTensorBuffer(slot.buffer), "LiteRtUnlockTensorBuffer", slot.spec.name);
  return out;
}

bool HasAccelerator(const LiteRtApi& api, LiteRtEnvironment env, int hw) {
  LiteRtParamIndex n = 0;
  Check(api.GetNumAccelerators(env, &n), "LiteRtGetNumAccelerators", "listing accelerators");
  for (LiteRtParamIndex i = 0; i < n; ++i) {
    LiteRtAccelerator acc;
    int support = 0;
    Check(api.GetAccelerator(env, i, &acc), "LiteRtGetAccelerator", "listing accelerators");
    Check(api.GetAcceleratorHardwareSupport(acc, &support), "LiteRtGetAcceleratorHardwareSupport", "");
    if (support & hw) return true;
  }
  return false;
}

CompiledSegment::CompiledSegment(const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan,
                                 const SegmentSpec& spec, const LaneSpec& lane, const std::vector<Slot*>& inputs,
                                 const std::vector<Slot*>& outputs, const CompileOptions& options)
    : api_(api), env_(env), plan_(plan), spec_(spec), path_(plan.dir + "/" + spec.file), inputs_(inputs) {
  const std::string where = plan.path + ": segment " + spec.name + " (" + spec.file + ")";
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) throw UserError(where + ": file not found in the plan's folder");
  const std::string digest = Sha256File(path_);
  if (digest != spec.sha256) {
    throw UserError(where + ": sha256 " + digest.substr(0, 12) + "... differs from the plan's " +
                    spec.sha256.substr(0, 12) + "... (truncated, corrupt or from another conversion: reconvert)");
  }
  const std::string broken = CheckTflite(path_);
  if (!broken.empty()) throw UserError(where + ": not a whole .tflite (" + broken + "; truncated or corrupt: reconvert)");
  LiteRtStatus s = api.CreateModelFromFile(env, path_.c_str(), &model_);
  if (s != kLiteRtStatusOk) {
    throw UserError(where + ": not a loadable .tflite (LiteRT status " + std::to_string(s) +
                    "; truncated or corrupt: reconvert)");
  }
  LiteRtParamIndex nsig = 0;
  Check(api.GetNumModelSignatures(model_, &nsig), "LiteRtGetNumModelSignatures", where);
  if (nsig != 1) throw UserError(where + ": has " + std::to_string(nsig) + " signatures, the runner needs exactly 1");
  LiteRtSignature sig;
  Check(api.GetModelSignature(model_, 0, &sig), "LiteRtGetModelSignature", where);
  LiteRtParamIndex nin = 0, nout = 0;
  Check(api.GetNumSignatureInputs(sig, &nin), "LiteRtGetNumSignatureInputs", where);
  Check(api.GetNumSignatureOutputs(sig, &nout), "LiteRtGetNumSignatureOutputs", where);
  if (nin != spec.inputs.size() || nout != spec.outputs.size()) {
    throw UserError(where + ": the model has " + std::to_string(nin) + " inputs and " + std::to_string(nout) +
                    " outputs, the plan says " + std::to_string(spec.inputs.size()) + " and " +
                    std::to_string(spec.outputs.size()) + ": plan and models do not match (reconvert)");
  }
  auto quant_of = [&](LiteRtTensor t, int et, const std::string& what) {
    Quant q;
    q.element_type = et;
    if (et == kLiteRtElementTypeFloat32) return q;
    if (et != kLiteRtElementTypeInt8 && et != kLiteRtElementTypeUInt8 && et != kLiteRtElementTypeInt16) {
      throw UserError(where + ": " + what + " has element type " + std::to_string(et) +
                      ": the runner exchanges float32 and converts int8/uint8/int16 only");
    }
    int qt = 0;
    Check(api.GetQuantizationTypeId(t, &qt), "LiteRtGetQuantizationTypeId", where);
    if (qt != kLiteRtQuantizationPerTensor) throw UserError(where + ": " + what + " is not per-tensor quantized");
    LiteRtQuantizationPerTensor pq;
    Check(api.GetPerTensorQuantization(t, &pq), "LiteRtGetPerTensorQuantization", where);
    q.scale = pq.scale;
    q.zero_point = pq.zero_point;
    return q;
  };
  for (LiteRtParamIndex i = 0; i < nin; ++i) {
    const char* name = nullptr;
    LiteRtTensor t;
    LiteRtRankedTensorType type;
    Check(api.GetSignatureInputName(sig, i, &name), "LiteRtGetSignatureInputName", where);
    Check(api.GetSignatureInputTensorByIndex(sig, i, &t), "LiteRtGetSignatureInputTensorByIndex", where);
    Check(api.GetRankedTensorType(t, &type), "LiteRtGetRankedTensorType", where);
    std::string what = "signature input " + std::to_string(i) + " '" + name + "'";
    if (Dims(type) != spec.inputs[i].shape) {
      throw UserError(where + ": " + what + " has shape " + ShapeText(Dims(type)) + ", the plan's input '" +
                      spec.inputs[i].name + "' is " + ShapeText(spec.inputs[i].shape) +
                      ": plan and models do not match (reconvert)");
    }
    in_types_.push_back(type);
    in_quant_.push_back(quant_of(t, type.element_type, what));
  }
  // Outputs: by signature name when the model names them after the plan's tensors (a model
  // converted from a dict, e.g. fusion tasks), else by the output_N order (runner.py's rule).
  std::vector<std::string> sig_names;
  for (LiteRtParamIndex i = 0; i < nout; ++i) {
    const char* name = nullptr;
    Check(api.GetSignatureOutputName(sig, i, &name), "LiteRtGetSignatureOutputName", where);
    sig_names.push_back(name);
  }
  std::set<std::string> sig_set(sig_names.begin(), sig_names.end());
  bool by_name = true;
  for (const auto& t : spec.outputs) by_name = by_name && sig_set.count(t.name);
  std::vector<size_t> order(nout);  // signature positions sorted by their output_N number
  for (size_t i = 0; i < nout; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return OutputPos(sig_names[a]) < OutputPos(sig_names[b]); });
  outputs_.assign(nout, nullptr);
  for (size_t j = 0; j < spec.outputs.size(); ++j) {
    size_t sig_index = order[j];
    if (by_name) {
      sig_index = static_cast<size_t>(std::find(sig_names.begin(), sig_names.end(), spec.outputs[j].name) -
                                      sig_names.begin());
    }
    outputs_[sig_index] = outputs[j];
  }
  for (LiteRtParamIndex i = 0; i < nout; ++i) {
    LiteRtTensor t;
    LiteRtRankedTensorType type;
    Check(api.GetSignatureOutputTensorByIndex(sig, i, &t), "LiteRtGetSignatureOutputTensorByIndex", where);
    Check(api.GetRankedTensorType(t, &type), "LiteRtGetRankedTensorType", where);
    std::string what = "signature output " + std::to_string(i) + " '" + sig_names[i] + "'";
    if (Dims(type) != outputs_[i]->spec.shape) {
      throw UserError(where + ": " + what + " has shape " + ShapeText(Dims(type)) + ", the plan's output '" +
                      outputs_[i]->spec.name + "' is " + ShapeText(outputs_[i]->spec.shape) +
                      ": plan and models do not match (reconvert)");
    }
    out_types_.push_back(type);
    out_quant_.push_back(quant_of(t, type.element_type, what));
  }
  Compile(lane, options);
  BindBuffers();
}

CompiledSegment::~CompiledSegment() {
  for (auto b : owned_) api_.DestroyTensorBuffer(b);
  if (compiled_) api_.DestroyCompiledModel(compiled_);
  if (model_) api_.DestroyModel(model_);
}

bool CompiledSegment::TryCompile(int hw, int threads, bool builtin, std::string* why) {
  LiteRtOptions options = nullptr;
  Check(api_.CreateOptions(&options), "LiteRtCreateOptions", spec_.name);
  struct Guard {
    const LiteRtApi& a;
    LiteRtOptions o;
    ~Guard() { a.DestroyOptions(o); }
  } guard{api_, options};
  Check(api_.SetOptionsHardwareAccelerators(options, hw), "LiteRtSetOptionsHardwareAccelerators", spec_.name);
  if (hw & kLiteRtHwAcceleratorCpu) {
    // CPU options travel as TOML text under the "xnnpack" identifier in this LiteRT version.
    std::string toml = "num_threads = " + std::to_string(threads) + "\n";
    if (builtin) toml += "kernel_mode = \"builtin\"\n";
    char* payload = strdup(toml.c_str());
    LiteRtOpaqueOptions opaque = nullptr;
    LiteRtStatus s = api_.CreateOpaqueOptions("xnnpack", payload, FreePayload, &opaque);
    if (s != kLiteRtStatusOk) {
      std::free(payload);
      Check(s, "LiteRtCreateOpaqueOptions", spec_.name);
    }
    Check(api_.AddOpaqueOptions(options, opaque), "LiteRtAddOpaqueOptions", spec_.name);
  }
  LiteRtStatus s = api_.CreateCompiledModel(env_, model_, options, &compiled_);
  if (s != kLiteRtStatusOk) {
    compiled_ = nullptr;
    *why = std::string("compiling for ") + HwName(hw) + " failed with LiteRT status " + std::to_string(s);
    return false;
  }
  bool fully = false;
  Check(api_.CompiledModelIsFullyAccelerated(compiled_, &fully), "LiteRtCompiledModelIsFullyAccelerated", spec_.name);
  report_.fully_accelerated = fully;
  if (!fully) *why = std::string(HwName(hw)) + " did not take the whole graph";
  return fully;
}

void CompiledSegment::Compile(const LaneSpec& lane, const CompileOptions& options) {
  report_.requested = AcceleratorOf(plan_, lane);
  const bool builtin = lane.delegate == "builtin";
  if (report_.requested == "cpu") {
    std::string why;
    if (!TryCompile(kLiteRtHwAcceleratorCpu, lane.threads, builtin, &why) && compiled_ == nullptr) {
      throw InternalError(plan_.path + ": segment " + spec_.name + ": " + why);
    }
    report_.accelerator = "cpu";
    return;
  }
  const int hw = report_.requested == "gpu" ? kLiteRtHwAcceleratorGpu : kLiteRtHwAcceleratorNpu;
  const std::string where = plan_.path + ": segment " + spec_.name + " on lane " + lane.name + " (delegate " +
                            lane.delegate + ")";
  std::string why;
  if (!HasAccelerator(api_, env_, hw)) {
    why = std::string("no ") + HwName(hw) + " accelerator registered in LiteRT" +
          (hw == kLiteRtHwAcceleratorGpu ? " (libLiteRtGpuAccelerator.so / libLiteRtOpenClAccelerator.so not on "
                                          "LD_LIBRARY_PATH, or no GPU)"
                                        : " (no NPU dispatch library: --dispatch_dir DIR)");
  } else if (TryCompile(hw, lane.threads, false, &why)) {
    report_.accelerator = HwName(hw);
    return;
  }
  if (!options.allow_fallback) {
    throw EnvError(where + ": " + why + "; map the lane to xnnpack or pass --allow_fallback to run it on what "
                   "LiteRT can (recorded in the run JSON)");
  }
  report_.fallback = true;
  report_.why = why;
  if (compiled_ != nullptr) {  // partially accelerated: keep it, the CPU runs the rest
    report_.accelerator = std::string(HwName(hw)) + "+cpu";
    return;
  }
  std::string cpu_why;
  bool with_hw = HasAccelerator(api_, env_, hw) && TryCompile(hw | kLiteRtHwAcceleratorCpu, lane.threads, false, &cpu_why);
  if (with_hw || compiled_ != nullptr) {
    report_.accelerator = std::string(HwName(hw)) + "+cpu";
    report_.fully_accelerated = false;
    return;
  }
  if (!TryCompile(kLiteRtHwAcceleratorCpu, lane.threads, false, &cpu_why) && compiled_ == nullptr) {
    throw InternalError(where + ": " + why + ", and the CPU fallback failed too: " + cpu_why);
  }
  report_.accelerator = "cpu";
  report_.fully_accelerated = false;
}

void CompiledSegment::BindBuffers() {
  auto bind = [&](Slot* slot, const Quant& q, const LiteRtRankedTensorType& type, bool input, size_t index) {
    if (q.element_type == kLiteRtElementTypeFloat32) {
      if (!input) return slot->buffer;  // the producer writes the plan tensor's own memory
      // Each consumer gets its own buffer object over that memory (zero-copy): LiteRT locks a
      // buffer while it runs, so two lanes cannot share one object at the same time.
      LiteRtTensorBuffer view = nullptr;
      Check(api_.CreateTensorBufferFromHostMemory(&slot->type, slot->host, slot->elements * sizeof(float), nullptr,
                                                  &view),
            "LiteRtCreateTensorBufferFromHostMemory", spec_.name);
      owned_.push_back(view);
      return view;
    }
    report_.zero_copy = false;
    LiteRtTensorBufferRequirements req;
    if (input) {
      Check(api_.GetCompiledModelInputBufferRequirements(compiled_, 0, index, &req),
            "LiteRtGetCompiledModelInputBufferRequirements", spec_.name);
    } else {
      Check(api_.GetCompiledModelOutputBufferRequirements(compiled_, 0, index, &req),
            "LiteRtGetCompiledModelOutputBufferRequirements", spec_.name);
    }
    LiteRtTensorBuffer b = nullptr;
    Check(api_.CreateManagedTensorBufferFromRequirements(env_, &type, req, &b),
          "LiteRtCreateManagedTensorBufferFromRequirements", spec_.name);
    owned_.push_back(b);
    return b;
  };
  for (size_t i = 0; i < inputs_.size(); ++i) in_bufs_.push_back(bind(inputs_[i], in_quant_[i], in_types_[i], true, i));
  for (size_t i = 0; i < outputs_.size(); ++i) {
    out_bufs_.push_back(bind(outputs_[i], out_quant_[i], out_types_[i], false, i));
  }
}

namespace {

template <typename T>
void Quantize(const float* src, void* dst, size_t n, const Quant& q, float lo, float hi) {
  T* d = static_cast<T*>(dst);
  for (size_t i = 0; i < n; ++i) {
    float v = std::nearbyint(src[i] / q.scale) + static_cast<float>(q.zero_point);  // half to even, as np.round
    d[i] = static_cast<T>(std::min(hi, std::max(lo, v)));
  }
}

template <typename T>
void Dequantize(const void* src, float* dst, size_t n, const Quant& q) {
  const T* s = static_cast<const T*>(src);
  for (size_t i = 0; i < n; ++i) dst[i] = (static_cast<float>(s[i]) - static_cast<float>(q.zero_point)) * q.scale;
}

}  // namespace

void CompiledSegment::Run() {
  // Quantized tensors are converted through the plan tensor's host memory directly: its buffer
  // object is shared by every consumer, and LiteRT refuses two locks of one object at a time.
  auto lock = [&](LiteRtTensorBuffer b, int mode) {
    void* p = nullptr;
    Check(api_.LockTensorBuffer(b, &p, mode), "LiteRtLockTensorBuffer", spec_.name);
    return p;
  };
  for (size_t i = 0; i < inputs_.size(); ++i) {
    const Quant& q = in_quant_[i];
    if (q.element_type == kLiteRtElementTypeFloat32) continue;
    const float* src = static_cast<const float*>(inputs_[i]->host);
    void* dst = lock(in_bufs_[i], kLiteRtTensorBufferLockModeWrite);
    size_t n = inputs_[i]->elements;
    if (q.element_type == kLiteRtElementTypeInt8) Quantize<int8_t>(src, dst, n, q, -128.f, 127.f);
    else if (q.element_type == kLiteRtElementTypeUInt8) Quantize<uint8_t>(src, dst, n, q, 0.f, 255.f);
    else Quantize<int16_t>(src, dst, n, q, -32768.f, 32767.f);
    Check(api_.UnlockTensorBuffer(in_bufs_[i]), "LiteRtUnlockTensorBuffer", spec_.name);
  }
  Check(api_.RunCompiledModel(compiled_, 0, in_bufs_.size(), in_bufs_.data(), out_bufs_.size(), out_bufs_.data()),
        "LiteRtRunCompiledModel", "segment " + spec_.name);
  for (size_t i = 0; i < outputs_.size(); ++i) {
    const Quant& q = out_quant_[i];
    if (q.element_type == kLiteRtElementTypeFloat32) continue;
    const void* src = lock(out_bufs_[i], kLiteRtTensorBufferLockModeRead);
    float* dst = static_cast<float*>(outputs_[i]->host);
    size_t n = outputs_[i]->elements;
    if (q.element_type == kLiteRtElementTypeInt8) Dequantize<int8_t>(src, dst, n, q);
    else if (q.element_type == kLiteRtElementTypeUInt8) Dequantize<uint8_t>(src, dst, n, q);
    else Dequantize<int16_t>(src, dst, n, q);
    Check(api_.UnlockTensorBuffer(out_bufs_[i]), "LiteRtUnlockTensorBuffer", spec_.name);
  }
}

}  // namespace nnsplice
