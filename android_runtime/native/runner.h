// Runs a plan as android_runtime/runner.py does: one thread per lane pinned to the lane's cores,
// each segment compiled once in its lane's thread, named tensors as sync points (a segment waits
// for its inputs; a run ends when every result tensor is ready), warm-up then timed runs.
#ifndef NNSPLICE_NATIVE_RUNNER_H_
#define NNSPLICE_NATIVE_RUNNER_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "litert_c.h"
#include "plan.h"
#include "segment.h"

namespace nnsplice {

struct RunnerOptions {
  bool pin = true;
  bool allow_fallback = false;
  int spin_us = 20;  // how long a waiting thread polls before it sleeps on the condition variable
};

// Per run: end-to-end latency and every segment's (start, end), microseconds from the run's start.
struct RunRecord {
  double latency_us = 0;
  std::vector<std::pair<double, double>> segments;  // indexed like Plan::segments
};

// What main() drives: the lane runner or the bare loop.
class Runner {
 public:
  virtual ~Runner() = default;
  // Copies `x` (the plan input's element count) into the input tensor's buffer (once: zero-copy after).
  virtual void SetInput(const std::vector<float>& x) = 0;
  // One inference; throws a lane's error.
  virtual RunRecord Run() = 0;
  // The float32 contents of a plan tensor (after a run).
  virtual std::vector<float> Read(const std::string& tensor) const = 0;
  // What segment i (Plan::segments order) was compiled for.
  virtual const AccelReport& report(size_t i) const = 0;
};

class PlanRunner : public Runner {
 public:
  // Starts the lane threads; each pins itself, compiles its segments and reports. Throws the first
  // lane's error (UserError/EnvError/InternalError).
  PlanRunner(const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan, const RunnerOptions& options);
  ~PlanRunner() override;

  void SetInput(const std::vector<float>& x) override;
  RunRecord Run() override;
  std::vector<float> Read(const std::string& tensor) const override;
  const AccelReport& report(size_t i) const override { return segments_[i]->report(); }

 private:
  void LaneMain(size_t lane_index);
  void Shutdown();
  void Wait(const std::atomic<uint64_t>& flag, uint64_t gen);
  void Publish(std::atomic<uint64_t>& flag, uint64_t gen);
  void Fail(std::exception_ptr e);
  Slot* slot(const std::string& name) const;

  const LiteRtApi& api_;
  LiteRtEnvironment env_;
  const Plan& plan_;
  RunnerOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::unique_ptr<CompiledSegment>> segments_;  // indexed like Plan::segments
  std::vector<Slot*> results_;
  std::vector<std::thread> threads_;
  std::mutex mu_;               // guards the condition variable, compile order and errors
  std::condition_variable cv_;
  std::atomic<uint64_t> run_gen_{0};  // bumped to start a run; lanes follow it
  std::atomic<bool> stop_{false};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;
  size_t started_ = 0;
  RunRecord* record_ = nullptr;
  std::chrono::steady_clock::time_point t0_;
};

// A one-segment plan invoked in a loop on the calling thread (pinned to the segment's lane): no
// lane threads, no hand-over. The floor the plan runner is compared with (--bare).
class BareRunner : public Runner {
 public:
  BareRunner(const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan, const RunnerOptions& options);
  ~BareRunner() override;

  void SetInput(const std::vector<float>& x) override { WriteSlot(api_, *slots_[0], x); }
  RunRecord Run() override;
  std::vector<float> Read(const std::string& tensor) const override;
  const AccelReport& report(size_t) const override { return segment_->report(); }

 private:
  const LiteRtApi& api_;
  std::vector<std::unique_ptr<Slot>> slots_;  // the input, then the outputs
  std::unique_ptr<CompiledSegment> segment_;
};

// The lane's thread pins itself to `cores`; throws EnvError naming the lane when it cannot.
void PinToCores(const std::string& lane, const std::vector<int>& cores);

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_RUNNER_H_
