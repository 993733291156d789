// Runs a conditional (early-exit, version 2) plan as android_runtime/conditional.py does: a batch of
// B samples runs stage 1's body and exit head at B; samples whose max softmax reaches the stage's
// threshold leave with the head's logits; the rest are compacted (order kept) into the first rows
// of the stage's output tensor and run the next stage's body (and head) at the batch size that
// survived. Every sample's output and the stage it left at are recorded. Stages run one after
// another on the calling thread, pinned to each stage's lane; a two-stage plan whose stages sit on
// two lanes runs a stream of batches pipelined (RunStream): stage 2 in a second thread pinned to
// its lane, reading its own copy of the samples that moved on, while stage 1 takes the next batch.
#ifndef NNSPLICE_NATIVE_EXITS_RUNNER_H_
#define NNSPLICE_NATIVE_EXITS_RUNNER_H_

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "litert_c.h"
#include "plan.h"
#include "runner.h"
#include "segment.h"

namespace nnsplice {

using Clock = std::chrono::steady_clock;

// One batch through the stages.
struct ExitRecord {
  double latency_us = 0;                 // input written -> last output
  std::vector<float> outputs;            // [B, classes]: each sample's logits (exit head or final head)
  std::vector<int> exit_of;              // [B]: the stage each sample left at
  std::vector<int> stage_batches;        // samples each stage ran on (stages that ran)
  std::vector<std::pair<double, double>> stage_spans;  // (start, end) us of each stage that ran
};

// Max softmax probability of each of `rows` rows of `cols` logits.
std::vector<double> SoftmaxConfidence(const float* logits, size_t rows, size_t cols);

// What main() and the run JSON need from a runner of conditional plans: ExitRunner (PAME's plans,
// pipelined or not) and OverlapRunner (overlap_runner.h: exit heads on lanes of their own).
class ConditionalRunner {
 public:
  virtual ~ConditionalRunner() = default;
  // `count` batches, the k-th from `x` + (k mod `batches`) batches; `total_us`: first start to last end.
  virtual std::vector<ExitRecord> RunStream(const float* x, size_t batches, int count, double* total_us) = 0;
  virtual bool pipelined() const = 0;
  // What the plan segment `name` was compiled for (segments no stage names: not compiled, nullptr).
  virtual const AccelReport* report(const std::string& name) const = 0;
  virtual size_t classes() const = 0;
  // Members appended to the run JSON's "exits" section (", \"overlap\": true, ..."); "" by default.
  virtual std::string ExitsJsonExtra() const { return ""; }
};

class ExitRunner : public ConditionalRunner {
 public:
  // Compiles every segment the stages name, each after pinning to its stage's lane. Throws
  // UserError / EnvError / InternalError as CompiledSegment does.
  ExitRunner(const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan, const RunnerOptions& options);
  ~ExitRunner() override;
  ExitRunner(const ExitRunner&) = delete;
  ExitRunner& operator=(const ExitRunner&) = delete;

  // One batch: `x` points at B samples (the plan input's element count), stage after stage here.
  ExitRecord Run(const float* x);
  // `count` batches, the k-th from `x` + (k mod `batches`) batches: one after another, or pipelined
  // (pipelined()); a batch's latency then runs from its stage 1 start to its stage 2 end (queueing
  // included). `total_us`: first start to last end.
  std::vector<ExitRecord> RunStream(const float* x, size_t batches, int count, double* total_us) override;
  bool pipelined() const override { return pipelined_; }
  const AccelReport* report(const std::string& name) const override;
  size_t classes() const override { return classes_; }

 private:
  Slot* slot(const std::string& name) const;
  const SegmentSpec& segment_spec(const std::string& name) const;
  CompiledSegment& segment(const std::string& name) const;
  ExitRecord Start() const;
  // Stage i on the samples in `index` (in the first rows of its input); the confident ones leave
  // and the rest are compacted. Spans are relative to `t0`.
  void Stage(size_t i, std::vector<int>* index, ExitRecord* rec, Clock::time_point t0);
  const std::string& AtBatch(size_t stage, bool head, int b) const;
  void Pin(const std::string& lane);

  const LiteRtApi& api_;
  const Plan& plan_;
  RunnerOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::map<std::string, std::unique_ptr<CompiledSegment>> segments_;
  std::string pinned_lane_;
  size_t classes_ = 0;
  size_t sample_in_ = 0;  // floats per input sample
  bool pipelined_ = false;
  Slot* stage_out_ = nullptr;  // pipelined: stage 1's output (compacted), which stage 1 overwrites next batch
  Slot* handoff_ = nullptr;    // pipelined: the copy stage 2's segments read
  std::unique_ptr<Slot> handoff_owned_;
};

// The run JSON of android_runtime/conditional.run_conditional (plus "runner": "native" and a
// "native" section); `records` are the timed runs, `total_us` their wall time one after another,
// `native_extra` members appended to "native" (", \"input\": ..."), `tail` members appended at the
// top level (", \"outputs\": ...").
std::string ExitRunJson(const Plan& plan, const std::string& plan_arg, int warmup, int runs, bool pinned,
                        double total_us, const std::vector<ExitRecord>& records, const ConditionalRunner& runner,
                        const std::string& native_extra, const std::string& tail);

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_EXITS_RUNNER_H_
