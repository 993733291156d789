// Runs an overlap plan (version 2, "exits": {"overlap": true}) as android_runtime/conditional.py's
// _run_overlap does: stage 1's body at the full batch B on the calling thread; then, for each exit,
// the exit head runs on its head lane (a persistent thread pinned there, HeadWorker) while the
// calling thread starts the next stage's body at the full batch, in its chunks. Between the first
// and the second chunk (the first is the block the head copies, so about the head's time) the
// calling thread takes the head's verdict; once every sample has left, the rest is skipped. No
// compaction: a sample that left earlier rides along in later stages, its output is the exit's.
//
// Hand-overs are atomics (a job counter and a done counter, release/acquire): the waiting side polls
// for a bounded time (`head_spin_us`), yielding its core, then sleeps on a condition variable.
#ifndef NNSPLICE_NATIVE_OVERLAP_RUNNER_H_
#define NNSPLICE_NATIVE_OVERLAP_RUNNER_H_

#include <atomic>
#include <condition_variable>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "exits_runner.h"
#include "litert_c.h"
#include "plan.h"
#include "runner.h"
#include "segment.h"

namespace nnsplice {

// A thread pinned to a head lane's cores that runs the exit heads handed to it, one at a time, and
// says which samples reach the threshold.
class HeadWorker {
 public:
  // Starts the thread; it pins itself to the lane's cores (`pin`). Throws EnvError when it cannot.
  HeadWorker(const LaneSpec& lane, bool pin, int spin_us);
  ~HeadWorker();
  HeadWorker(const HeadWorker&) = delete;
  HeadWorker& operator=(const HeadWorker&) = delete;

  // Hands `head` over (its input slot must be ready); returns at once.
  void Submit(CompiledSegment* head, double threshold, size_t rows, size_t classes);
  // Waits for the head handed over last; its logits are then in head->outputs()[0]. Rethrows its error.
  const std::vector<char>& Result();

  // Per job, microseconds: submit -> the worker started the head; the head's run (with its softmax);
  // how long Result() waited (0 when the head had finished).
  double start_delay_us() const { return start_delay_us_; }
  double head_us() const { return head_us_; }
  double verdict_wait_us() const { return verdict_wait_us_; }

 private:
  void Loop();
  // Polls `ready` for spin_us_ (yielding), then sleeps on the condition variable until it holds.
  template <class Ready> void Await(Ready ready);
  void Notify();

  LaneSpec lane_;
  bool pin_;
  int spin_us_;
  std::atomic<uint64_t> submitted_{0};  // jobs handed over
  std::atomic<uint64_t> finished_{0};   // jobs done (the verdict is then readable)
  std::atomic<bool> stop_{false};
  std::mutex mu_;  // only for sleeping: the condition variable and the start-up handshake
  std::condition_variable cv_;
  bool started_ = false;
  std::exception_ptr start_error_;
  // the job (written before submitted_ is bumped) and its verdict (written before finished_ is)
  CompiledSegment* head_ = nullptr;
  double threshold_ = 0;
  size_t rows_ = 0, classes_ = 0;
  Clock::time_point submit_at_;
  std::vector<char> leave_;
  std::exception_ptr error_;
  double start_delay_us_ = 0, head_us_ = 0, verdict_wait_us_ = 0;
  std::thread thread_;
};

class OverlapRunner : public ConditionalRunner {
 public:
  // Compiles stage 1's body at B, every later stage's chunks (pinned to the stage's lane) and every
  // exit head at B (pinned to its head lane), and starts one HeadWorker per head lane. Throws
  // UserError / EnvError / InternalError as CompiledSegment does.
  OverlapRunner(const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan, const RunnerOptions& options,
                int head_spin_us);
  ~OverlapRunner() override;
  OverlapRunner(const OverlapRunner&) = delete;
  OverlapRunner& operator=(const OverlapRunner&) = delete;

  // One batch: `x` points at B samples.
  ExitRecord Run(const float* x);
  // Batches one after another (an overlap plan is not pipelined).
  std::vector<ExitRecord> RunStream(const float* x, size_t batches, int count, double* total_us) override;
  bool pipelined() const override { return false; }
  const AccelReport* report(const std::string& name) const override;
  size_t classes() const override { return classes_; }
  // ", \"overlap\": true, \"handover_us\": {...}": medians over the timed runs' exits.
  std::string ExitsJsonExtra() const override;

 private:
  Slot* slot(const std::string& name) const;
  CompiledSegment* Compile(const std::string& name, const std::string& lane, const std::vector<Slot*>* inputs);
  void Pin(const std::string& lane);

  const LiteRtApi& api_;
  LiteRtEnvironment env_;
  const Plan& plan_;
  RunnerOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::map<std::string, std::unique_ptr<CompiledSegment>> segments_;
  std::map<std::string, std::unique_ptr<HeadWorker>> workers_;  // head lane -> its thread
  CompiledSegment* body0_ = nullptr;                 // stage 1 at B
  std::vector<std::vector<CompiledSegment*>> chunks_;  // per stage (stage 0: empty)
  std::vector<CompiledSegment*> heads_;              // per stage but the last: its head at B
  std::vector<Slot*> feats_;                         // per stage: its output at B (the head's and next stage's input)
  std::string pinned_lane_;
  size_t classes_ = 0;
  std::vector<double> start_delays_, head_times_, verdict_waits_;  // per exit that ran, every run
};

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_OVERLAP_RUNNER_H_
