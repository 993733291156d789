// One plan segment compiled for its lane's accelerator with LiteRT's CompiledModel API, bound to
// the runner's tensor slots (one LiteRT host-memory buffer per named plan tensor).
#ifndef NNSPLICE_NATIVE_SEGMENT_H_
#define NNSPLICE_NATIVE_SEGMENT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "litert_c.h"
#include "plan.h"

namespace nnsplice {

// A named plan tensor: float32, host memory, shared by its producer and every consumer.
struct Slot {
  TensorSpec spec;
  size_t elements = 0;
  LiteRtTensorBuffer buffer = nullptr;  // the producer writes into this one
  void* host = nullptr;                 // its memory, which every consumer's view shares
  LiteRtRankedTensorType type{};
  std::atomic<uint64_t> ready{0};  // the run generation that published it (0 = never)
};

// How a segment-side tensor of another element type is converted (int8 segments).
struct Quant {
  int element_type = kLiteRtElementTypeFloat32;
  float scale = 1.0f;
  int64_t zero_point = 0;
};

// What a segment's compilation gave, as the run JSON reports it.
struct AccelReport {
  std::string requested;       // cpu | gpu | npu (from the lane's delegate)
  std::string accelerator;     // what runs it: cpu | gpu | npu | gpu+cpu | npu+cpu
  bool fully_accelerated = false;  // LiteRtCompiledModelIsFullyAccelerated for what was asked
  bool fallback = false;       // the requested accelerator did not take the whole graph
  std::string why;             // why it fell back ("" otherwise)
  bool zero_copy = true;       // every input/output is the plan tensor's own buffer
};

struct CompileOptions {
  bool allow_fallback = false;
};

class CompiledSegment {
 public:
  // Loads the model, checks its signature against the plan, compiles it for `lane`. Throws
  // UserError (missing/truncated file, plan that does not match the model), EnvError
  // (accelerator not available without --allow_fallback), InternalError.
  CompiledSegment(const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan, const SegmentSpec& spec,
                  const LaneSpec& lane, const std::vector<Slot*>& inputs, const std::vector<Slot*>& outputs,
                  const CompileOptions& options);
  ~CompiledSegment();
  CompiledSegment(const CompiledSegment&) = delete;
  CompiledSegment& operator=(const CompiledSegment&) = delete;

  // Runs once; the input slots must be ready. Converts int8 inputs/outputs when the model has them.
  void Run();

  const SegmentSpec& spec() const { return spec_; }
  const AccelReport& report() const { return report_; }
  const std::vector<Slot*>& inputs() const { return inputs_; }
  const std::vector<Slot*>& outputs() const { return outputs_; }

 private:
  void Compile(const LaneSpec& lane, const CompileOptions& options);
  bool TryCompile(int hw, int threads, bool builtin, std::string* why);
  void BindBuffers();

  const LiteRtApi& api_;
  LiteRtEnvironment env_;
  const Plan& plan_;
  const SegmentSpec& spec_;
  std::string path_;
  LiteRtModel model_ = nullptr;
  LiteRtCompiledModel compiled_ = nullptr;
  std::vector<Slot*> inputs_;   // plan order = signature input order
  std::vector<Slot*> outputs_;  // signature output order
  std::vector<Quant> in_quant_, out_quant_;
  std::vector<LiteRtRankedTensorType> in_types_, out_types_;
  std::vector<LiteRtTensorBuffer> in_bufs_, out_bufs_;  // what RunCompiledModel gets
  std::vector<LiteRtTensorBuffer> owned_;               // private buffers of converted tensors
  AccelReport report_;
};

// A float32 host-memory slot for `spec` (the buffer is the caller's to destroy).
std::unique_ptr<Slot> MakeSlot(const LiteRtApi& api, LiteRtEnvironment env, const TensorSpec& spec);

// The slot named `name` among `slots`. Throws InternalError when there is none.
Slot* FindSlot(const std::vector<std::unique_ptr<Slot>>& slots, const std::string& name);

// Destroys every slot's buffer (the runners' teardown, after their segments are gone).
void DestroySlotBuffers(const LiteRtApi& api, const std::vector<std::unique_ptr<Slot>>& slots);

// Copies `x` into / out of a slot's buffer (locking it). Throws InternalError on a size mismatch.
void WriteSlot(const LiteRtApi& api, Slot& slot, const std::vector<float>& x);
std::vector<float> ReadSlot(const LiteRtApi& api, const Slot& slot);

// Whether the environment registered an accelerator for `hw` (a kLiteRtHwAccelerator* bit).
bool HasAccelerator(const LiteRtApi& api, LiteRtEnvironment env, int hw);

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_SEGMENT_H_
