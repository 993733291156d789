#include "overlap_runner.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "errors.h"
#include "json.h"

namespace nnsplice {
namespace {

double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t m = v.size() / 2;
  return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

}  // namespace

HeadWorker::HeadWorker(const LaneSpec& lane, bool pin, int spin_us) : lane_(lane), pin_(pin), spin_us_(spin_us) {
  thread_ = std::thread(&HeadWorker::Loop, this);
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return started_; });
  if (start_error_) {
    l.unlock();
    std::exception_ptr e = start_error_;
    stop_ = true;
    thread_.join();
    std::rethrow_exception(e);
  }
}

HeadWorker::~HeadWorker() {
  stop_.store(true, std::memory_order_release);
  Notify();
  if (thread_.joinable()) thread_.join();
}

template <class Ready>
void HeadWorker::Await(Ready ready) {
  const auto deadline = Clock::now() + std::chrono::microseconds(spin_us_);
  while (!ready()) {
    if (Clock::now() >= deadline) {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, ready);
      return;
    }
    sched_yield();  // another thread sharing this core gets it
  }
}

void HeadWorker::Notify() {
  {
    std::lock_guard<std::mutex> l(mu_);  // a waiter is either before its check or asleep
  }
  cv_.notify_all();
}

void HeadWorker::Loop() {
  try {
    if (pin_) PinToCores(lane_.name, lane_.cores);
  } catch (...) {
    start_error_ = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    started_ = true;
  }
  cv_.notify_all();
  if (start_error_) return;
  uint64_t done = 0;
  for (;;) {
    Await([&] { return submitted_.load(std::memory_order_acquire) > done || stop_.load(std::memory_order_acquire); });
    if (submitted_.load(std::memory_order_acquire) == done) return;  // stopped with nothing to do
    const auto start = Clock::now();
    start_delay_us_ = Us(submit_at_, start);
    try {
      head_->Run();
      const float* logits = static_cast<const float*>(head_->outputs()[0]->host);
      const std::vector<double> conf = SoftmaxConfidence(logits, rows_, classes_);
      leave_.assign(rows_, 0);
      for (size_t r = 0; r < rows_; ++r) leave_[r] = conf[r] >= threshold_;
      error_ = nullptr;
    } catch (...) {  // rethrown by Result() in the stage thread
      error_ = std::current_exception();
    }
    head_us_ = Us(start, Clock::now());
    finished_.store(++done, std::memory_order_release);
    Notify();
  }
}

void HeadWorker::Submit(CompiledSegment* head, double threshold, size_t rows, size_t classes) {
  head_ = head;
  threshold_ = threshold;
  rows_ = rows;
  classes_ = classes;
  submit_at_ = Clock::now();
  submitted_.fetch_add(1, std::memory_order_release);
  Notify();
}

const std::vector<char>& HeadWorker::Result() {
  const uint64_t want = submitted_.load(std::memory_order_relaxed);
  const auto t = Clock::now();
  if (finished_.load(std::memory_order_acquire) < want) {
    Await([&] { return finished_.load(std::memory_order_acquire) >= want; });
    verdict_wait_us_ = Us(t, Clock::now());
  } else {
    verdict_wait_us_ = 0;
  }
  if (error_) std::rethrow_exception(error_);
  return leave_;
}

OverlapRunner::OverlapRunner(const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan,
                             const RunnerOptions& options, int head_spin_us)
    : api_(api), env_(env), plan_(plan), options_(options) {
  slots_.push_back(MakeSlot(api, env, plan.input));
  for (const auto& seg : plan.segments) {
    for (const auto& t : seg.outputs) slots_.push_back(MakeSlot(api, env, t));
  }
  const auto& stages = plan.exits.stages;
  const std::string n = std::to_string(plan.exits.batch);
  auto at_batch = [&](const std::vector<std::pair<int, std::string>>& m, size_t i, const char* what) {
    for (const auto& kv : m) {
      if (kv.first == plan.exits.batch) return kv.second;
    }
    throw UserError(plan.path + ": exits.stages[" + std::to_string(i) + "]." + what + " has no segment for the full "
                    "batch " + n + " (an overlap plan runs every stage at it)");
  };
  chunks_.resize(stages.size());
  for (size_t i = 0; i < stages.size(); ++i) {
    if (i == 0) {
      body0_ = Compile(at_batch(stages[0].body, 0, "body"), stages[0].lane, nullptr);
      feats_.push_back(body0_->outputs()[0]);
    } else {  // chunk 0 reads the stage before's output at B (its last chunk's, past stage 1)
      Slot* prev = feats_.back();
      for (const auto& c : stages[i].chunks) {
        std::vector<Slot*> ins = {prev};
        chunks_[i].push_back(Compile(c, stages[i].lane, &ins));
        prev = chunks_[i].back()->outputs()[0];
      }
      feats_.push_back(prev);
    }
    if (i + 1 < stages.size()) {
      std::vector<Slot*> ins = {feats_.back()};
      heads_.push_back(Compile(at_batch(stages[i].head, i, "head"), stages[i].head_lane, &ins));
    }
  }
  classes_ = feats_.back()->elements / static_cast<size_t>(plan.exits.batch);
  if (feats_.back()->elements != slot(plan.output.name)->elements) {
    throw UserError(plan.path + ": exits.stages[" + std::to_string(stages.size() - 1) + "] last chunk's output " +
                    feats_.back()->spec.name + " differs in size from the plan output " + plan.output.name);
  }
  for (const auto& st : stages) {
    if (!st.head_lane.empty() && !workers_.count(st.head_lane)) {
      workers_[st.head_lane] = std::make_unique<HeadWorker>(plan.lane(st.head_lane), options.pin, head_spin_us);
    }
  }
}

OverlapRunner::~OverlapRunner() {
  workers_.clear();  // joins the head threads before their segments go
  segments_.clear();
  DestroySlotBuffers(api_, slots_);
}

Slot* OverlapRunner::slot(const std::string& name) const { return FindSlot(slots_, name); }

CompiledSegment* OverlapRunner::Compile(const std::string& name, const std::string& lane,
                                        const std::vector<Slot*>* inputs) {
  const SegmentSpec* spec = nullptr;
  for (const auto& s : plan_.segments) {
    if (s.name == name) spec = &s;
  }
  if (spec == nullptr) throw InternalError("no segment " + name);
  std::vector<Slot*> ins, outs;
  for (size_t k = 0; k < spec->inputs.size(); ++k) {
    Slot* s = inputs != nullptr && k < inputs->size() ? (*inputs)[k] : slot(spec->inputs[k].name);
    if (s->spec.shape != spec->inputs[k].shape) {  // a chunk or head reading what the overlap path feeds it
      throw UserError(plan_.path + ": segment " + name + " input '" + spec->inputs[k].name + "' has another shape "
                      "than '" + s->spec.name + "', which an overlap plan feeds it");
    }
    ins.push_back(s);
  }
  for (const auto& t : spec->outputs) outs.push_back(slot(t.name));
  Pin(lane);  // LiteRT's worker threads inherit the lane's cores
  CompileOptions co;
  co.allow_fallback = options_.allow_fallback;
  segments_[name] = std::make_unique<CompiledSegment>(api_, env_, plan_, *spec, plan_.lane(spec->lane), ins, outs, co);
  return segments_[name].get();
}

void OverlapRunner::Pin(const std::string& lane) {
  if (!options_.pin || lane == pinned_lane_) return;
  PinToCores(lane, plan_.lane(lane).cores);
  pinned_lane_ = lane;
}

const AccelReport* OverlapRunner::report(const std::string& name) const {
  auto it = segments_.find(name);
  return it == segments_.end() ? nullptr : &it->second->report();
}

ExitRecord OverlapRunner::Run(const float* x) {
  const auto& stages = plan_.exits.stages;
  const size_t n = static_cast<size_t>(plan_.exits.batch);
  ExitRecord rec;
  rec.outputs.assign(n * classes_, 0.0f);
  rec.exit_of.assign(n, static_cast<int>(stages.size()) - 1);
  std::vector<char> left(n, 0);
  size_t gone = 0;
  const auto t0 = Clock::now();
  Slot* in = slot(plan_.input.name);
  std::memcpy(in->host, x, in->elements * sizeof(float));
  Pin(stages[0].lane);
  body0_->Run();
  rec.stage_batches.push_back(static_cast<int>(n));
  rec.stage_spans.emplace_back(0.0, Us(t0, Clock::now()));
  for (size_t i = 0; i + 1 < stages.size(); ++i) {
    const auto ts = Clock::now();
    HeadWorker& w = *workers_.at(stages[i].head_lane);
    w.Submit(heads_[i], stages[i].threshold, n, classes_);
    Pin(stages[i + 1].lane);
    const std::vector<char>* leave = nullptr;
    for (size_t j = 0; j < chunks_[i + 1].size(); ++j) {
      if (j == 1) {  // the head is (about) done: every sample gone -> nothing more to run
        leave = &w.Result();
        size_t all = 0;
        for (size_t r = 0; r < n; ++r) all += left[r] || (*leave)[r];
        if (all == n) break;
      }
      chunks_[i + 1][j]->Run();
    }
    if (leave == nullptr) leave = &w.Result();
    start_delays_.push_back(w.start_delay_us());
    head_times_.push_back(w.head_us());
    verdict_waits_.push_back(w.verdict_wait_us());
    const float* logits = static_cast<const float*>(heads_[i]->outputs()[0]->host);
    for (size_t r = 0; r < n; ++r) {
      if (left[r] || !(*leave)[r]) continue;
      std::memcpy(&rec.outputs[r * classes_], logits + r * classes_, classes_ * sizeof(float));
      rec.exit_of[r] = static_cast<int>(i);
      left[r] = 1;
      ++gone;
    }
    rec.stage_batches.push_back(static_cast<int>(n - gone));
    rec.stage_spans.emplace_back(Us(t0, ts), Us(t0, Clock::now()));
    if (gone == n) break;
  }
  if (gone < n) {  // the rest ran the whole network: the last stage's output
    const float* o = static_cast<const float*>(feats_.back()->host);
    for (size_t r = 0; r < n; ++r) {
      if (!left[r]) std::memcpy(&rec.outputs[r * classes_], o + r * classes_, classes_ * sizeof(float));
    }
  }
  rec.latency_us = Us(t0, Clock::now());
  return rec;
}

std::vector<ExitRecord> OverlapRunner::RunStream(const float* x, size_t batches, int count, double* total_us) {
  const size_t n = slot(plan_.input.name)->elements;
  start_delays_.clear();
  head_times_.clear();
  verdict_waits_.clear();
  std::vector<ExitRecord> out;
  const auto t0 = Clock::now();
  for (int k = 0; k < count; ++k) out.push_back(Run(x + (static_cast<size_t>(k) % batches) * n));
  *total_us = Us(t0, Clock::now());
  return out;
}

std::string OverlapRunner::ExitsJsonExtra() const {
  return ", \"overlap\": true, \"handover_us\": {\"head_start\": " + JsonNumber(Median(start_delays_)) +
         ", \"head\": " + JsonNumber(Median(head_times_)) +
         ", \"verdict_wait\": " + JsonNumber(Median(verdict_waits_)) +
         ", \"exits\": " + std::to_string(start_delays_.size()) + "}";
}

}  // namespace nnsplice
