#include "runner.h"

#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "errors.h"

namespace nnsplice {
namespace {

using Clock = std::chrono::steady_clock;

double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

}  // namespace

void PinToCores(const std::string& lane, const std::vector<int>& cores) {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::string text;
  for (int c : cores) {
    CPU_SET(c, &set);
    text += (text.empty() ? "" : ", ") + std::to_string(c);
  }
  if (sched_setaffinity(0, sizeof set, &set) != 0) {  // 0: this thread; LiteRT's threads inherit it
    throw EnvError("lane " + lane + ": cannot pin to cores [" + text + "] (" + std::strerror(errno) +
                   "); this machine has " + std::to_string(sysconf(_SC_NPROCESSORS_CONF)) +
                   " CPUs: fix the plan's lanes or pass --no-pin");
  }
}

PlanRunner::PlanRunner(const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan, const RunnerOptions& options)
    : api_(api), env_(env), plan_(plan), options_(options) {
  auto add_slot = [&](const TensorSpec& t) { slots_.push_back(MakeSlot(api, env, t)); };
  add_slot(plan.input);
  for (const auto& seg : plan.segments) {
    for (const auto& t : seg.outputs) add_slot(t);
  }
  for (const auto& n : ResultNames(plan)) results_.push_back(slot(n));
  segments_.resize(plan.segments.size());
  for (size_t i = 0; i < plan.lanes.size(); ++i) threads_.emplace_back(&PlanRunner::LaneMain, this, i);
  std::unique_lock<std::mutex> l(mu_);
  cv_.wait(l, [&] { return started_ == plan.lanes.size(); });
  if (error_) {
    l.unlock();
    std::exception_ptr e = error_;
    Shutdown();  // joins the lanes and frees what was built
    std::rethrow_exception(e);
  }
}

PlanRunner::~PlanRunner() { Shutdown(); }

void PlanRunner::Shutdown() {
  stop_ = true;
  {
    std::lock_guard<std::mutex> l(mu_);
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
  segments_.clear();
  DestroySlotBuffers(api_, slots_);
}

Slot* PlanRunner::slot(const std::string& name) const { return FindSlot(slots_, name); }

void PlanRunner::Fail(std::exception_ptr e) {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!error_) error_ = e;
    failed_ = true;
  }
  cv_.notify_all();
}

void PlanRunner::Wait(const std::atomic<uint64_t>& flag, uint64_t gen) {
  const auto deadline = Clock::now() + std::chrono::microseconds(options_.spin_us);
  while (flag.load(std::memory_order_acquire) < gen) {
    if (failed_.load() || stop_.load()) return;
    if (Clock::now() >= deadline) {
      std::unique_lock<std::mutex> l(mu_);
      cv_.wait(l, [&] { return flag.load(std::memory_order_acquire) >= gen || failed_.load() || stop_.load(); });
      return;
    }
    sched_yield();  // a lane sharing this core gets it
  }
}

void PlanRunner::Publish(std::atomic<uint64_t>& flag, uint64_t gen) {
  flag.store(gen, std::memory_order_release);
  {
    std::lock_guard<std::mutex> l(mu_);  // a waiter is either before its check or asleep
  }
  cv_.notify_all();
}

void PlanRunner::LaneMain(size_t lane_index) {
  const LaneSpec& lane = plan_.lanes[lane_index];
  std::vector<size_t> mine;
  bool ok = true;
  try {
    if (options_.pin) PinToCores(lane.name, lane.cores);
    for (size_t i = 0; i < plan_.segments.size(); ++i) {
      const SegmentSpec& spec = plan_.segments[i];
      if (spec.lane != lane.name) continue;
      std::vector<Slot*> ins, outs;
      for (const auto& t : spec.inputs) ins.push_back(slot(t.name));
      for (const auto& t : spec.outputs) outs.push_back(slot(t.name));
      std::lock_guard<std::mutex> l(mu_);  // one compilation at a time in the shared environment
      if (error_) break;
      CompileOptions co;
      co.allow_fallback = options_.allow_fallback;
      segments_[i] = std::make_unique<CompiledSegment>(api_, env_, plan_, spec, lane, ins, outs, co);
      mine.push_back(i);
    }
  } catch (...) {
    ok = false;
    std::lock_guard<std::mutex> l(mu_);
    if (!error_) error_ = std::current_exception();
    failed_ = true;
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    ++started_;
  }
  cv_.notify_all();
  uint64_t seen = 0;
  while (ok) {
    Wait(run_gen_, seen + 1);
    if (stop_.load() || failed_.load()) return;
    const uint64_t gen = run_gen_.load(std::memory_order_acquire);
    seen = gen;
    try {
      for (size_t i : mine) {
        CompiledSegment& seg = *segments_[i];
        for (Slot* s : seg.inputs()) Wait(s->ready, gen);
        if (failed_.load() || stop_.load()) break;
        const auto t_start = Clock::now();
        seg.Run();
        const auto t_end = Clock::now();
        record_->segments[i] = {Us(t0_, t_start), Us(t0_, t_end)};  // before publishing: the run may end then
        for (Slot* s : seg.outputs()) Publish(s->ready, gen);
      }
    } catch (...) {
      Fail(std::current_exception());
      return;
    }
  }
}

void PlanRunner::SetInput(const std::vector<float>& x) { WriteSlot(api_, *slots_[0], x); }

RunRecord PlanRunner::Run() {
  RunRecord rec;
  rec.segments.assign(plan_.segments.size(), {0.0, 0.0});
  record_ = &rec;
  const uint64_t gen = run_gen_.load() + 1;
  slots_[0]->ready.store(gen, std::memory_order_release);  // the input is there before the run starts
  t0_ = Clock::now();
  Publish(run_gen_, gen);
  for (Slot* r : results_) Wait(r->ready, gen);
  const auto t1 = Clock::now();
  if (failed_.load()) {
    std::lock_guard<std::mutex> l(mu_);
    std::rethrow_exception(error_);
  }
  rec.latency_us = Us(t0_, t1);
  record_ = nullptr;
  return rec;
}

std::vector<float> PlanRunner::Read(const std::string& tensor) const { return ReadSlot(api_, *slot(tensor)); }

BareRunner::BareRunner(const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan, const RunnerOptions& options)
    : api_(api) {
  if (plan.segments.size() != 1) {
    throw UserError("--bare: " + plan.path + " has " + std::to_string(plan.segments.size()) +
                    " segments; the bare invoke loop times a single-segment plan");
  }
  const SegmentSpec& s = plan.segments[0];
  const LaneSpec& lane = plan.lane(s.lane);
  if (options.pin) PinToCores(lane.name, lane.cores);
  slots_.push_back(MakeSlot(api, env, plan.input));
  std::vector<Slot*> outs;
  for (const auto& t : s.outputs) {
    slots_.push_back(MakeSlot(api, env, t));
    outs.push_back(slots_.back().get());
  }
  CompileOptions co;
  co.allow_fallback = options.allow_fallback;
  segment_ = std::make_unique<CompiledSegment>(api, env, plan, s, lane, std::vector<Slot*>{slots_[0].get()}, outs, co);
}

BareRunner::~BareRunner() {
  segment_.reset();
  DestroySlotBuffers(api_, slots_);
}

RunRecord BareRunner::Run() {
  const auto t0 = Clock::now();
  segment_->Run();
  const double us = Us(t0, Clock::now());
  return RunRecord{us, {{0.0, us}}};
}

std::vector<float> BareRunner::Read(const std::string& tensor) const {
  for (const auto& s : slots_) {
    if (s->spec.name == tensor) return ReadSlot(api_, *s);
  }
  throw InternalError("no tensor " + tensor);
}

}  // namespace nnsplice
