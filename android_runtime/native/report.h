// The run JSON: android_runtime/runner.py's keys, then what only the native runner knows.
#ifndef NNSPLICE_NATIVE_REPORT_H_
#define NNSPLICE_NATIVE_REPORT_H_

#include <string>
#include <utility>
#include <vector>

#include "plan.h"
#include "runner.h"
#include "segment.h"

namespace nnsplice {

struct RunReport {
  std::string plan_arg;  // the plan path as given
  int warmup = 0;
  int runs = 0;
  bool pinned = true;
  std::string mode;    // lanes | bare
  std::string input;   // the --input file, or "seeded"
  bool allow_fallback = false;
  std::string litert;  // JSON object: library, symbol version, accelerators
  std::vector<RunRecord> records;
  std::vector<AccelReport> accel;  // indexed like Plan::segments
  std::string outputs_dir;         // "" = no outputs requested
  std::vector<std::pair<std::string, std::string>> outputs;  // tensor -> file name in outputs_dir
};

std::string RunJson(const Plan& plan, const RunReport& r);

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_REPORT_H_
