// The partition plan (converter/plan.py, version 1) as the native runner reads it: the same
// structural checks as load_plan/check_plan, with errors naming the file, the key and the value.
#ifndef NNSPLICE_NATIVE_PLAN_H_
#define NNSPLICE_NATIVE_PLAN_H_

#include <string>
#include <vector>

namespace nnsplice {

constexpr int kPlanVersion = 1;

struct TensorSpec {
  std::string name;           // graph-wide tensor name, e.g. "s2.out"
  std::vector<int64_t> shape;  // NHWC for feature maps
  std::string dtype;          // float32: what segments exchange
};

struct LaneSpec {
  std::string name;
  std::vector<int> cores;  // the lane thread (and LiteRT's threads) are pinned to these
  int threads = 1;         // CPU accelerator threads
  std::string delegate;    // xnnpack | cpu | builtin | gpu | npu (legacy: hexagon | dsp; nnapi refused)
};

struct SegmentSpec {
  std::string name;
  std::string lane;
  std::string file;  // relative to the plan's folder
  std::string sha256;  // of the file (checked before LiteRT maps it)
  std::vector<TensorSpec> inputs;   // in the .tflite signature's input order
  std::vector<TensorSpec> outputs;  // in the plan's order (matched to signature outputs by name or position)
};

struct Plan {
  std::string path;  // the plan file as given
  std::string dir;   // its folder
  std::string name;
  std::string dtype;
  TensorSpec input;
  TensorSpec output;
  std::vector<LaneSpec> lanes;           // in file order
  std::vector<SegmentSpec> segments;     // topological order
  const LaneSpec& lane(const std::string& name) const;
};

// Reads and checks a plan.json. Throws UserError for a missing/unreadable file or a bad plan.
Plan LoadPlan(const std::string& path);

// The plan's results: its output and every tensor no segment consumes (runner.result_names).
std::vector<std::string> ResultNames(const Plan& plan);

// The accelerator a plan delegate maps to: "cpu", "gpu" or "npu". Throws UserError naming the
// file, the lane and the allowed delegates for anything else.
std::string AcceleratorOf(const Plan& plan, const LaneSpec& lane);

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_PLAN_H_
