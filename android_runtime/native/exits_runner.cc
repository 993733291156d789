#include "exits_runner.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>

#include "errors.h"
#include "json.h"

namespace nnsplice {
namespace {

double Us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

const char* Bool(bool b) { return b ? "true" : "false"; }

}  // namespace

std::vector<double> SoftmaxConfidence(const float* logits, size_t rows, size_t cols) {
  std::vector<double> conf(rows, 0.0);
  for (size_t r = 0; r < rows; ++r) {
    const float* z = logits + r * cols;
    float m = z[0];
    for (size_t c = 1; c < cols; ++c) m = z[c] > m ? z[c] : m;
    double sum = 0;
    for (size_t c = 0; c < cols; ++c) sum += std::exp(static_cast<double>(z[c] - m));
    conf[r] = 1.0 / sum;  // the largest term is exp(0) = 1
  }
  return conf;
}

ExitRunner::ExitRunner(const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan, const RunnerOptions& options)
    : api_(api), plan_(plan), options_(options) {
  slots_.push_back(MakeSlot(api, env, plan.input));
  for (const auto& seg : plan.segments) {
    for (const auto& t : seg.outputs) slots_.push_back(MakeSlot(api, env, t));
  }
  const size_t batch = static_cast<size_t>(plan.exits.batch);
  sample_in_ = slot(plan.input.name)->elements / batch;
  classes_ = slot(plan.output.name)->elements / batch;
  const auto& st0 = plan.exits.stages[0];
  pipelined_ = plan.exits.stages.size() == 2 && st0.lane != plan.exits.stages[1].lane;
  if (pipelined_) {  // stage 2 reads its own copy of stage 1's output: stage 1 goes on meanwhile
    stage_out_ = slot(st0.head.empty() ? "" : segment_spec(st0.head.front().second).inputs[0].name);
    handoff_owned_ = MakeSlot(api, env, stage_out_->spec);
    handoff_ = handoff_owned_.get();
  }
  CompileOptions co;
  co.allow_fallback = options.allow_fallback;
  for (size_t si = 0; si < plan.exits.stages.size(); ++si) {
    const auto& st = plan.exits.stages[si];
    for (const auto* m : {&st.body, &st.head}) {
      for (const auto& kv : *m) {
        if (segments_.count(kv.second)) continue;
        const SegmentSpec* spec = &segment_spec(kv.second);
        std::vector<Slot*> ins, outs;
        for (const auto& t : spec->inputs) {
          ins.push_back(pipelined_ && si == 1 && t.name == stage_out_->spec.name ? handoff_ : slot(t.name));
        }
        for (const auto& t : spec->outputs) outs.push_back(slot(t.name));
        Pin(st.lane);  // LiteRT's worker threads inherit the lane's cores
        segments_[kv.second] =
            std::make_unique<CompiledSegment>(api, env, plan, *spec, plan.lane(spec->lane), ins, outs, co);
      }
    }
  }
}

const SegmentSpec& ExitRunner::segment_spec(const std::string& name) const {
  for (const auto& s : plan_.segments) {
    if (s.name == name) return s;
  }
  throw InternalError("no segment " + name);
}

ExitRunner::~ExitRunner() {
  segments_.clear();
  if (handoff_owned_ && handoff_owned_->buffer) api_.DestroyTensorBuffer(handoff_owned_->buffer);
  DestroySlotBuffers(api_, slots_);
}

Slot* ExitRunner::slot(const std::string& name) const { return FindSlot(slots_, name); }

CompiledSegment& ExitRunner::segment(const std::string& name) const { return *segments_.at(name); }

const AccelReport* ExitRunner::report(const std::string& name) const {
  auto it = segments_.find(name);
  return it == segments_.end() ? nullptr : &it->second->report();
}

const std::string& ExitRunner::AtBatch(size_t stage, bool head, int b) const {
  const auto& m = head ? plan_.exits.stages[stage].head : plan_.exits.stages[stage].body;
  for (const auto& kv : m) {
    if (kv.first == b) return kv.second;
  }
  throw UserError(plan_.path + ": exits.stages[" + std::to_string(stage) + "]." + (head ? "head" : "body") +
                  " has no segment for batch " + std::to_string(b) + " (samples that moved on)");
}

void ExitRunner::Pin(const std::string& lane) {
  if (!options_.pin || lane == pinned_lane_) return;
  PinToCores(lane, plan_.lane(lane).cores);
  pinned_lane_ = lane;
}

ExitRecord ExitRunner::Start() const {
  const int batch = plan_.exits.batch;
  ExitRecord rec;
  rec.outputs.assign(static_cast<size_t>(batch) * classes_, 0.0f);
  rec.exit_of.assign(static_cast<size_t>(batch), static_cast<int>(plan_.exits.stages.size()) - 1);
  return rec;
}

void ExitRunner::Stage(size_t i, std::vector<int>* index, ExitRecord* rec, Clock::time_point t0) {
  const size_t n_stages = plan_.exits.stages.size();
  const auto ts = Clock::now();
  const int b = static_cast<int>(index->size());
  CompiledSegment& body = segment(AtBatch(i, false, b));
  body.Run();
  Slot* out = body.outputs()[0];
  const size_t row = out->elements / static_cast<size_t>(b);  // floats per sample of the stage's output
  if (i + 1 == n_stages) {  // the network's own head: every sample still here leaves with it
    const float* o = static_cast<const float*>(out->host);
    for (size_t r = 0; r < index->size(); ++r) {
      std::memcpy(&rec->outputs[static_cast<size_t>((*index)[r]) * classes_], o + r * classes_,
                  classes_ * sizeof(float));
    }
    index->clear();
  } else {
    CompiledSegment& head = segment(AtBatch(i, true, b));
    Slot* feats = head.inputs()[0];  // the batch-B tensor the head and the next stage read
    if (feats != out) std::memcpy(feats->host, out->host, static_cast<size_t>(b) * row * sizeof(float));
    head.Run();
    const float* logits = static_cast<const float*>(head.outputs()[0]->host);
    const std::vector<double> conf = SoftmaxConfidence(logits, static_cast<size_t>(b), classes_);
    const double th = plan_.exits.stages[i].threshold;
    float* f = static_cast<float*>(feats->host);
    std::vector<int> kept;
    for (size_t r = 0; r < index->size(); ++r) {
      const size_t sample = static_cast<size_t>((*index)[r]);
      if (conf[r] >= th) {  // leaves here with the head's logits
        std::memcpy(&rec->outputs[sample * classes_], logits + r * classes_, classes_ * sizeof(float));
        rec->exit_of[sample] = static_cast<int>(i);
      } else {  // moves on: compacted, in order, into the first rows
        if (kept.size() != r) std::memmove(f + kept.size() * row, f + r * row, row * sizeof(float));
        kept.push_back((*index)[r]);
      }
    }
    index->swap(kept);
  }
  rec->stage_batches.push_back(b);
  rec->stage_spans.emplace_back(Us(t0, ts), Us(t0, Clock::now()));
}

ExitRecord ExitRunner::Run(const float* x) {
  ExitRecord rec = Start();
  std::vector<int> index(static_cast<size_t>(plan_.exits.batch));
  for (size_t i = 0; i < index.size(); ++i) index[i] = static_cast<int>(i);
  const auto t0 = Clock::now();
  Slot* in = slot(plan_.input.name);
  std::memcpy(in->host, x, in->elements * sizeof(float));
  for (size_t i = 0; i < plan_.exits.stages.size() && !index.empty(); ++i) {
    Pin(plan_.exits.stages[i].lane);
    if (pipelined_ && i == 1) {  // stage 2's segments read the hand-over copy
      const size_t row = stage_out_->elements / static_cast<size_t>(plan_.exits.batch);
      std::memcpy(handoff_->host, stage_out_->host, index.size() * row * sizeof(float));
    }
    Stage(i, &index, &rec, t0);
  }
  rec.latency_us = Us(t0, Clock::now());
  return rec;
}

std::vector<ExitRecord> ExitRunner::RunStream(const float* x, size_t batches, int count, double* total_us) {
  const size_t n = slot(plan_.input.name)->elements;
  std::vector<ExitRecord> out;
  const auto t0 = Clock::now();
  if (!pipelined_) {
    for (int k = 0; k < count; ++k) out.push_back(Run(x + (static_cast<size_t>(k) % batches) * n));
    *total_us = Us(t0, Clock::now());
    return out;
  }
  // Stage 2 in a second thread pinned to its lane; a hand-over queue of one waiting batch (as
  // conditional.py): stage 1 runs batch k+1 while stage 2 finishes batch k.
  struct Item {
    int k = 0;
    std::vector<float> feats;  // the samples that moved on, compacted
    std::vector<int> index;
    ExitRecord rec;
    Clock::time_point ts;
  };
  out.resize(static_cast<size_t>(count));
  std::deque<Item> queue;
  bool done = false, failed = false;
  std::exception_ptr error;
  std::mutex mu;
  std::condition_variable cv;
  const std::string lane2 = plan_.exits.stages[1].lane;
  std::thread second([&] {
    try {
      if (options_.pin) PinToCores(lane2, plan_.lane(lane2).cores);
      for (;;) {
        Item it;
        {
          std::unique_lock<std::mutex> l(mu);
          cv.wait(l, [&] { return !queue.empty() || done; });
          if (queue.empty()) return;
          it = std::move(queue.front());
          queue.pop_front();
        }
        cv.notify_all();
        if (!it.index.empty()) {
          std::memcpy(handoff_->host, it.feats.data(), it.feats.size() * sizeof(float));
          Stage(1, &it.index, &it.rec, it.ts);
        }
        it.rec.latency_us = Us(it.ts, Clock::now());
        out[static_cast<size_t>(it.k)] = std::move(it.rec);
      }
    } catch (...) {
      std::lock_guard<std::mutex> l(mu);
      error = std::current_exception();
      failed = true;
      cv.notify_all();
    }
  });
  try {
    Pin(plan_.exits.stages[0].lane);
    Slot* in = slot(plan_.input.name);
    for (int k = 0; k < count; ++k) {
      Item it;
      it.k = k;
      it.rec = Start();
      it.index.resize(static_cast<size_t>(plan_.exits.batch));
      for (size_t i = 0; i < it.index.size(); ++i) it.index[i] = static_cast<int>(i);
      it.ts = Clock::now();
      std::memcpy(in->host, x + (static_cast<size_t>(k) % batches) * n, n * sizeof(float));
      Stage(0, &it.index, &it.rec, it.ts);
      const size_t row = stage_out_->elements / static_cast<size_t>(plan_.exits.batch);
      const float* f = static_cast<const float*>(stage_out_->host);
      it.feats.assign(f, f + it.index.size() * row);
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return queue.empty() || failed; });
      if (failed) break;
      queue.push_back(std::move(it));
      l.unlock();
      cv.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> l(mu);
    if (!error) error = std::current_exception();
    failed = true;
  }
  {
    std::lock_guard<std::mutex> l(mu);
    done = true;
  }
  cv.notify_all();
  second.join();
  if (error) std::rethrow_exception(error);
  *total_us = Us(t0, Clock::now());
  return out;
}

std::string ExitRunJson(const Plan& plan, const std::string& plan_arg, int warmup, int runs, bool pinned,
                        double total_us, const std::vector<ExitRecord>& records, const ConditionalRunner& runner,
                        const std::string& native_extra, const std::string& tail) {
  std::string j = "{\"plan\": " + JsonQuote(plan_arg) + ", \"name\": " + JsonQuote(plan.name) + ", \"dtype\": " +
                  JsonQuote(plan.dtype) + ", \"warmup\": " + std::to_string(warmup) + ", \"runs\": " +
                  std::to_string(runs) + ", \"latency_us\": [";
  for (size_t i = 0; i < records.size(); ++i) j += (i ? ", " : "") + JsonNumber(records[i].latency_us);
  j += "], \"lanes\": {";
  for (size_t li = 0; li < plan.lanes.size(); ++li) {
    const LaneSpec& l = plan.lanes[li];
    j += std::string(li ? ", " : "") + JsonQuote(l.name) + ": {\"cores\": [";
    for (size_t c = 0; c < l.cores.size(); ++c) j += (c ? ", " : "") + std::to_string(l.cores[c]);
    j += "], \"threads\": " + std::to_string(l.threads) + ", \"delegate\": " + JsonQuote(l.delegate) +
         ", \"segments\": {";
    bool first = true;
    for (size_t si = 0; si < plan.exits.stages.size(); ++si) {
      if (plan.exits.stages[si].lane != l.name) continue;
      j += std::string(first ? "" : ", ") + JsonQuote("stage" + std::to_string(si)) + ": [";
      first = false;
      for (size_t r = 0; r < records.size(); ++r) {
        j += r ? ", " : "";
        if (si < records[r].stage_spans.size()) {
          j += "[" + JsonNumber(records[r].stage_spans[si].first) + ", " +
               JsonNumber(records[r].stage_spans[si].second) + "]";
        } else {
          j += "null";
        }
      }
      j += "]";
    }
    j += "}}";
  }
  j += "}, \"pinned\": " + std::string(Bool(pinned)) + ", \"host\": {\"platform\": \"linux\", \"cpus\": " +
       std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + "}, \"runner\": \"native\", \"native\": {\"mode\": \"exits\"" +
       native_extra + ", \"segments\": {";
  bool first = true;
  for (const auto& s : plan.segments) {
    const AccelReport* a = runner.report(s.name);
    if (a == nullptr) continue;
    j += std::string(first ? "" : ", ") + JsonQuote(s.name) + ": {\"lane\": " + JsonQuote(s.lane) +
         ", \"requested\": " + JsonQuote(a->requested) + ", \"accelerator\": " + JsonQuote(a->accelerator) +
         ", \"fully_accelerated\": " + Bool(a->fully_accelerated) + ", \"fallback\": " + Bool(a->fallback) +
         ", \"why\": " + JsonQuote(a->why) + ", \"zero_copy\": " + Bool(a->zero_copy) + "}";
    first = false;
  }
  j += "}}, \"exits\": {\"batch\": " + std::to_string(plan.exits.batch) + ", \"stages\": " +
       std::to_string(plan.exits.stages.size()) + ", \"pipelined\": " + Bool(runner.pipelined()) + ", \"interval_us\": " +
       JsonNumber(total_us / (runs > 0 ? runs : 1)) + runner.ExitsJsonExtra() + ", \"exit_of\": [";
  for (size_t r = 0; r < records.size(); ++r) {
    j += r ? ", [" : "[";
    for (size_t k = 0; k < records[r].exit_of.size(); ++k) j += (k ? ", " : "") + std::to_string(records[r].exit_of[k]);
    j += "]";
  }
  j += "], \"stage_batches\": [";
  for (size_t r = 0; r < records.size(); ++r) {
    j += r ? ", [" : "[";
    for (size_t k = 0; k < records[r].stage_batches.size(); ++k) {
      j += (k ? ", " : "") + std::to_string(records[r].stage_batches[k]);
    }
    j += "]";
  }
  return j + "]}" + tail + "}\n";
}

}  // namespace nnsplice
