#include "report.h"

#include <unistd.h>

#include "json.h"

namespace nnsplice {
namespace {

const char* Bool(bool b) { return b ? "true" : "false"; }

std::string LanesJson(const Plan& plan, const std::vector<RunRecord>& records) {
  std::string j = "{";
  for (size_t li = 0; li < plan.lanes.size(); ++li) {
    const LaneSpec& l = plan.lanes[li];
    j += std::string(li ? ", " : "") + JsonQuote(l.name) + ": {\"cores\": [";
    for (size_t c = 0; c < l.cores.size(); ++c) j += (c ? ", " : "") + std::to_string(l.cores[c]);
    j += "], \"threads\": " + std::to_string(l.threads) + ", \"delegate\": " + JsonQuote(l.delegate) +
         ", \"segments\": {";
    bool first = true;
    for (size_t si = 0; si < plan.segments.size(); ++si) {
      if (plan.segments[si].lane != l.name) continue;
      j += std::string(first ? "" : ", ") + JsonQuote(plan.segments[si].name) + ": [";
      first = false;
      for (size_t r = 0; r < records.size(); ++r) {
        j += (r ? ", [" : "[") + JsonNumber(records[r].segments[si].first) + ", " +
             JsonNumber(records[r].segments[si].second) + "]";
      }
      j += "]";
    }
    j += "}}";
  }
  return j + "}";
}

std::string SegmentsJson(const Plan& plan, const std::vector<AccelReport>& accel) {
  std::string j = "{";
  for (size_t i = 0; i < plan.segments.size() && i < accel.size(); ++i) {
    const AccelReport& a = accel[i];
    j += std::string(i ? ", " : "") + JsonQuote(plan.segments[i].name) + ": {\"lane\": " +
         JsonQuote(plan.segments[i].lane) + ", \"requested\": " + JsonQuote(a.requested) + ", \"accelerator\": " +
         JsonQuote(a.accelerator) + ", \"fully_accelerated\": " + Bool(a.fully_accelerated) +
         ", \"fallback\": " + Bool(a.fallback) + ", \"why\": " + JsonQuote(a.why) + ", \"zero_copy\": " +
         Bool(a.zero_copy) + "}";
  }
  return j + "}";
}

}  // namespace

std::string RunJson(const Plan& plan, const RunReport& r) {
  std::string j = "{\"plan\": " + JsonQuote(r.plan_arg) + ", \"name\": " + JsonQuote(plan.name) + ", \"dtype\": " +
                  JsonQuote(plan.dtype) + ", \"warmup\": " + std::to_string(r.warmup) + ", \"runs\": " +
                  std::to_string(r.runs) + ", \"latency_us\": [";
  for (size_t i = 0; i < r.records.size(); ++i) j += (i ? ", " : "") + JsonNumber(r.records[i].latency_us);
  j += "], \"lanes\": " + LanesJson(plan, r.records) + ", \"pinned\": " + Bool(r.pinned) +
       ", \"host\": {\"platform\": \"linux\", \"cpus\": " + std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) +
       "}, \"allow_fallback\": " + Bool(r.allow_fallback) + ", \"accelerators\": " + SegmentsJson(plan, r.accel) +
       ", \"runner\": \"native\", \"native\": {\"mode\": " + JsonQuote(r.mode) + ", \"input\": " +
       JsonQuote(r.input) + ", \"allow_fallback\": " + Bool(r.allow_fallback) + ", \"litert\": " + r.litert +
       ", \"segments\": " + SegmentsJson(plan, r.accel) + "}";
  if (!r.outputs_dir.empty()) {
    j += ", \"outputs\": {\"dir\": " + JsonQuote(r.outputs_dir) + ", \"files\": {";
    for (size_t i = 0; i < r.outputs.size(); ++i) {
      j += std::string(i ? ", " : "") + JsonQuote(r.outputs[i].first) + ": " + JsonQuote(r.outputs[i].second);
    }
    j += "}}";
  }
  return j + "}\n";
}

}  // namespace nnsplice
