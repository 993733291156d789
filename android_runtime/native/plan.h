// The partition plan (converter/plan.py, version 1; version 2 adds early exits) as the native runner
// reads it: the same structural checks as load_plan/check_plan, with errors naming the file, the key
// and the value.
#ifndef NNSPLICE_NATIVE_PLAN_H_
#define NNSPLICE_NATIVE_PLAN_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace nnsplice {

constexpr int kPlanVersion = 2;  // newest version read (1: every segment runs; 2: may have exits)

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

// One stage of a conditional (early-exit) plan: its body at every batch size, then (but the last)
// an exit head at every batch size and the confidence at or above which a sample leaves.
struct ExitStageSpec {
  std::string lane;
  std::vector<std::pair<int, std::string>> body;  // batch size -> segment name
  std::vector<std::pair<int, std::string>> head;  // batch size -> exit-head segment (empty for the last stage)
  double threshold = 0;                           // max softmax to leave (stages with a head)
  bool has_threshold = false;
  std::string head_lane;                          // overlap plans: the lane that runs this stage's head
  std::vector<std::string> chunks;                // overlap plans: the body at the full batch, in pieces
};

struct ExitsSpec {
  int batch = 0;  // samples per input batch
  std::vector<ExitStageSpec> stages;
  // stage i's head runs on its head lane while stage i+1's chunks start at the full batch (no
  // compaction); once every sample has left the rest is skipped (overlap_runner.h)
  bool overlap = false;
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
  int version = 1;
  bool has_exits = false;  // version 2 with "exits": run stage by stage (exits_runner.h)
  ExitsSpec exits;
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
