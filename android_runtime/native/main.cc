// nnsplice_runner: the native plan runner (C++17, LiteRT CompiledModel C API, no Python).
//
//   nnsplice_runner PLAN.json [--warmup 5] [--runs 50] [--out run.json] [--input x.npy | --seed 0]
//                   [--outputs DIR] [--allow_fallback] [--no-pin] [--litert_lib PATH] [--bare]
//
// Writes the run JSON of android_runtime/runner.py (plus a "native" section). Exit codes: 0 ok,
// 2 bad argument/plan/model/input, 3 library or accelerator not available, 1 internal failure;
// every error is one line on stderr. LiteRT's own log goes to stderr only with --verbose.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "errors.h"
#include "exits_runner.h"
#include "json.h"
#include "litert_c.h"
#include "npy.h"
#include "overlap_runner.h"
#include "plan.h"
#include "report.h"
#include "runner.h"
#include "segment.h"

#ifndef NNSPLICE_LITERT_VERSION
#define NNSPLICE_LITERT_VERSION "unknown"
#endif

namespace nnsplice {
namespace {

const char kUsage[] =
    "usage: nnsplice_runner PLAN.json [--warmup N] [--runs N] [--out FILE] [--input X.npy] [--seed N]\n"
    "       [--outputs DIR] [--allow_fallback] [--no-pin] [--litert_lib PATH] [--dispatch_dir DIR]\n"
    "       [--spin_us N] [--head_spin_us N] [--bare] [--verbose] [--version]\n";

struct Args {
  std::string plan, out, input, outputs, litert_lib, dispatch_dir;
  int warmup = 5, runs = 50, spin_us = 20;
  int head_spin_us = 50000;  // overlap plans: how long a head hand-over polls before it sleeps
  uint64_t seed = 0;
  bool pin = true, allow_fallback = false, bare = false, verbose = false, version = false;
};

int ParseInt(const std::string& flag, const std::string& v, int lo, int hi) {
  char* end = nullptr;
  long x = std::strtol(v.c_str(), &end, 10);
  if (v.empty() || *end != '\0' || x < lo || x > hi) {
    throw UserError(flag + " = '" + v + "': a whole number in " + std::to_string(lo) + "-" + std::to_string(hi));
  }
  return static_cast<int>(x);
}

Args ParseArgs(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string f = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UserError(f + " needs a value");
      return argv[++i];
    };
    if (f == "--warmup") a.warmup = ParseInt(f, value(), 0, 1000000);
    else if (f == "--runs") a.runs = ParseInt(f, value(), 1, 1000000);
    else if (f == "--spin_us") a.spin_us = ParseInt(f, value(), 0, 1000000);
    else if (f == "--head_spin_us") a.head_spin_us = ParseInt(f, value(), 0, 1000000);
    else if (f == "--seed") a.seed = static_cast<uint64_t>(ParseInt(f, value(), 0, 2147483647));
    else if (f == "--out") a.out = value();
    else if (f == "--input") a.input = value();
    else if (f == "--outputs") a.outputs = value();
    else if (f == "--litert_lib") a.litert_lib = value();
    else if (f == "--dispatch_dir") a.dispatch_dir = value();
    else if (f == "--allow_fallback") a.allow_fallback = true;
    else if (f == "--no-pin" || f == "--no_pin") a.pin = false;
    else if (f == "--bare") a.bare = true;
    else if (f == "--verbose") a.verbose = true;
    else if (f == "--version") a.version = true;
    else if (f == "-h" || f == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (!f.empty() && f[0] == '-') {
      throw UserError("unknown flag " + f + "; " + std::string(kUsage).substr(7, 60) + "... (--help)");
    } else if (a.plan.empty()) {
      a.plan = f;
    } else {
      throw UserError("a second plan '" + f + "': the runner takes one PLAN.json");
    }
  }
  if (a.plan.empty() && !a.version) throw UserError("no PLAN.json given (--help)");
  return a;
}

std::string ExeDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return ".";
  std::string p(buf, static_cast<size_t>(n));
  return p.substr(0, p.rfind('/'));
}

// Seeded standard-normal input (splitmix64 + Box-Muller). Not numpy's stream: for identical
// inputs pass --input (android_runtime/native.py does).
std::vector<float> SeededInput(size_t n, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  auto next = [&]() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return static_cast<double>((z ^ (z >> 31)) >> 11) * (1.0 / 9007199254740992.0);
  };
  std::vector<float> x(n);
  for (size_t i = 0; i < n; i += 2) {
    double u1 = next(), u2 = next();
    double r = std::sqrt(-2.0 * std::log(u1 > 0 ? u1 : 1e-300));
    x[i] = static_cast<float>(r * std::cos(2 * M_PI * u2));
    if (i + 1 < n) x[i + 1] = static_cast<float>(r * std::sin(2 * M_PI * u2));
  }
  return x;
}

std::string AcceleratorsJson(const LiteRtApi& api, LiteRtEnvironment env, bool* has_cpu) {
  LiteRtParamIndex n = 0;
  Check(api.GetNumAccelerators(env, &n), "LiteRtGetNumAccelerators", "start-up");
  std::string out = "[";
  *has_cpu = false;
  for (LiteRtParamIndex i = 0; i < n; ++i) {
    LiteRtAccelerator acc;
    const char* name = nullptr;
    LiteRtApiVersion v{};
    int hw = 0;
    Check(api.GetAccelerator(env, i, &acc), "LiteRtGetAccelerator", "start-up");
    Check(api.GetAcceleratorName(acc, &name), "LiteRtGetAcceleratorName", "start-up");
    Check(api.GetAcceleratorVersion(acc, &v), "LiteRtGetAcceleratorVersion", "start-up");
    Check(api.GetAcceleratorHardwareSupport(acc, &hw), "LiteRtGetAcceleratorHardwareSupport", "start-up");
    *has_cpu = *has_cpu || (hw & kLiteRtHwAcceleratorCpu);
    out += std::string(i ? ", " : "") + "{\"name\": " + JsonQuote(name ? name : "") + ", \"version\": \"" +
           std::to_string(v.major) + "." + std::to_string(v.minor) + "." + std::to_string(v.patch) +
           "\", \"hardware\": " + std::to_string(hw) + "}";
  }
  return out + "]";
}

std::string SafeName(const std::string& tensor) {
  std::string s;
  for (char c : tensor) s += (isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_') ? c : '_';
  return s + ".npy";
}

struct Captured {  // LiteRT's stderr chatter, kept out of the one-line errors
  int saved = -1;
  FILE* log = nullptr;
};

std::string LastLiteRtError(const Captured& c) {
  if (c.log == nullptr) return "";
  std::fflush(stderr);
  std::rewind(c.log);
  char line[1024];
  std::string last;
  while (std::fgets(line, sizeof line, c.log)) {
    if (std::strstr(line, "ERROR")) last = line;
  }
  while (!last.empty() && (last.back() == '\n' || last.back() == '\r')) last.pop_back();
  return last;
}

void WriteJson(const Args& a, const std::string& j) {
  if (a.out.empty()) {
    std::fputs(j.c_str(), stdout);
    return;
  }
  std::string tmp = a.out + ".tmp";
  std::ofstream f(tmp, std::ios::binary);
  f << j;
  f.close();
  if (!f || std::rename(tmp.c_str(), a.out.c_str()) != 0) throw UserError("--out " + a.out + ": cannot write it");
}

// A conditional (early-exit) plan: warm-up then timed batches, cycling through the input's batches.
// --outputs writes every timed run's per-sample outputs ([runs*B, classes]) and exit stages ([runs*B]).
int RunExits(const Args& a, const LiteRtApi& api, LiteRtEnvironment env, const Plan& plan, const RunnerOptions& ro,
             const std::vector<float>& x, const std::string& litert) {
  if (a.bare) throw UserError("--bare times a one-segment plan; " + plan.path + " has exits (runs stage by stage)");
  size_t n = 1;  // floats per batch
  for (int64_t d : plan.input.shape) n *= static_cast<size_t>(d);
  const size_t nb = x.size() / n;  // batches in the input (checked: a whole number)
  std::vector<ExitRecord> recs;
  double total_us = 0;
  std::string tail;
  {
    std::unique_ptr<ConditionalRunner> owned;
    if (plan.exits.overlap) owned = std::make_unique<OverlapRunner>(api, env, plan, ro, a.head_spin_us);
    else owned = std::make_unique<ExitRunner>(api, env, plan, ro);
    ConditionalRunner& runner = *owned;
    if (a.warmup > 0) runner.RunStream(x.data(), nb, a.warmup, &total_us);
    recs = runner.RunStream(x.data(), nb, a.runs, &total_us);
    if (!a.outputs.empty()) {
      mkdir(a.outputs.c_str(), 0755);
      std::vector<float> outs, exit_of;
      for (const auto& r : recs) {
        outs.insert(outs.end(), r.outputs.begin(), r.outputs.end());
        for (int e : r.exit_of) exit_of.push_back(static_cast<float>(e));
      }
      const int64_t rows = static_cast<int64_t>(exit_of.size());
      WriteNpy(a.outputs + "/outputs.npy", {rows, static_cast<int64_t>(runner.classes())}, outs.data());
      WriteNpy(a.outputs + "/exit_of.npy", {rows}, exit_of.data());
      tail = ", \"outputs\": {\"dir\": " + JsonQuote(a.outputs) +
             ", \"files\": {\"outputs\": \"outputs.npy\", \"exit_of\": \"exit_of.npy\"}}";
    }
    const std::string extra = ", \"input\": " + JsonQuote(a.input.empty() ? "seeded" : a.input) +
                              ", \"allow_fallback\": " + (a.allow_fallback ? "true" : "false") + ", \"litert\": " +
                              litert;
    const std::string j = ExitRunJson(plan, a.plan, a.warmup, a.runs, a.pin, total_us, recs, runner, extra, tail);
    WriteJson(a, j);
  }
  api.DestroyEnvironment(env);
  return 0;
}

int Main(int argc, char** argv, Captured* cap) {
  Args a = ParseArgs(argc, argv);
  if (!a.verbose) {
    cap->saved = dup(2);
    cap->log = std::tmpfile();
    if (cap->log) dup2(fileno(cap->log), 2);
  }
  LiteRtApi api = LiteRtApi::Load(a.litert_lib, ExeDir());
  Plan plan;
  if (!a.version) plan = LoadPlan(a.plan);  // before the environment: bad plans fail fast
  std::vector<LiteRtEnvOption> env_opts;
  if (!a.dispatch_dir.empty()) {
    LiteRtEnvOption o{};
    o.tag = kLiteRtEnvOptionTagDispatchLibraryDir;
    o.value.type = kLiteRtAnyTypeString;
    o.value.str_value = a.dispatch_dir.c_str();
    env_opts.push_back(o);
  }
  LiteRtEnvironment env = nullptr;
  Check(api.CreateEnvironment(static_cast<int>(env_opts.size()), env_opts.empty() ? nullptr : env_opts.data(), &env),
        "LiteRtCreateEnvironment", "start-up");
  bool has_cpu = false;
  std::string litert = "{\"library\": " + JsonQuote(api.library_path) + ", \"symbol_version\": " +
                       JsonQuote(api.symbol_version) + ", \"built_for\": " + JsonQuote(NNSPLICE_LITERT_VERSION) +
                       ", \"accelerators\": " + AcceleratorsJson(api, env, &has_cpu) + "}";
  if (!has_cpu) {
    throw EnvError(api.library_path + " registered no CPU accelerator: not a usable LiteRT " NNSPLICE_LITERT_VERSION);
  }
  if (a.version) {
    std::printf("%s\n", litert.c_str());
    return 0;
  }
  std::vector<float> x;
  if (!a.input.empty()) {
    NpyArray arr = ReadNpy(a.input);
    // a conditional plan takes any number of its batches ([n*B, ...]): the runs cycle through them
    bool batches = plan.has_exits && arr.shape.size() == plan.input.shape.size() && !arr.shape.empty() &&
                   arr.shape[0] > 0 && arr.shape[0] % plan.input.shape[0] == 0 &&
                   std::equal(arr.shape.begin() + 1, arr.shape.end(), plan.input.shape.begin() + 1);
    if (arr.shape != plan.input.shape && !batches) {
      std::string got = "[", want = "[";
      for (size_t i = 0; i < arr.shape.size(); ++i) got += (i ? ", " : "") + std::to_string(arr.shape[i]);
      for (size_t i = 0; i < plan.input.shape.size(); ++i) want += (i ? ", " : "") + std::to_string(plan.input.shape[i]);
      throw UserError("--input " + a.input + ": shape " + got + "], the plan takes " + want + "]" +
                      (plan.has_exits ? " (or any multiple of its batch)" : ""));
    }
    x = std::move(arr.data);
  } else {
    size_t n = 1;
    for (int64_t d : plan.input.shape) n *= static_cast<size_t>(d);
    x = SeededInput(n, a.seed);
  }
  RunnerOptions ro;
  ro.pin = a.pin;
  ro.allow_fallback = a.allow_fallback;
  ro.spin_us = a.spin_us;
  RunReport rep;
  rep.plan_arg = a.plan;
  rep.warmup = a.warmup;
  rep.runs = a.runs;
  rep.pinned = a.pin;
  rep.mode = a.bare ? "bare" : "lanes";
  rep.input = a.input.empty() ? "seeded" : a.input;
  rep.allow_fallback = a.allow_fallback;
  rep.litert = litert;
  rep.outputs_dir = a.outputs;
  if (plan.has_exits) return RunExits(a, api, env, plan, ro, x, litert);
  {
    std::unique_ptr<Runner> runner;
    if (a.bare) runner = std::make_unique<BareRunner>(api, env, plan, ro);
    else runner = std::make_unique<PlanRunner>(api, env, plan, ro);
    runner->SetInput(x);
    for (int i = 0; i < a.warmup; ++i) runner->Run();
    for (int i = 0; i < a.runs; ++i) rep.records.push_back(runner->Run());
    for (size_t i = 0; i < plan.segments.size(); ++i) rep.accel.push_back(runner->report(i));
    if (!a.outputs.empty()) {
      mkdir(a.outputs.c_str(), 0755);
      for (const auto& name : ResultNames(plan)) {
        std::vector<int64_t> shape;
        for (const auto& s : plan.segments) {
          for (const auto& t : s.outputs) {
            if (t.name == name) shape = t.shape;
          }
        }
        WriteNpy(a.outputs + "/" + SafeName(name), shape, runner->Read(name).data());
        rep.outputs.emplace_back(name, SafeName(name));
      }
    }
  }
  api.DestroyEnvironment(env);
  const std::string j = RunJson(plan, rep);
  if (a.out.empty()) {
    std::fputs(j.c_str(), stdout);
  } else {
    std::string tmp = a.out + ".tmp";
    std::ofstream f(tmp, std::ios::binary);
    f << j;
    f.close();
    if (!f || std::rename(tmp.c_str(), a.out.c_str()) != 0) throw UserError("--out " + a.out + ": cannot write it");
  }
  return 0;
}

}  // namespace
}  // namespace nnsplice

int main(int argc, char** argv) {
  nnsplice::Captured cap;
  int rc = 0;
  std::string msg;
  try {
    rc = nnsplice::Main(argc, argv, &cap);
  } catch (const nnsplice::NativeError& e) {
    rc = e.exit_code();
    msg = e.what();
  } catch (const std::exception& e) {
    rc = 1;
    msg = std::string("internal error: ") + e.what();
  }
  if (rc != 0) {
    std::string lite = nnsplice::LastLiteRtError(cap);
    if (!lite.empty() && rc != 2) msg += " [LiteRT: " + lite + "]";
    std::string line = "error: " + msg + "\n";
    int fd = cap.saved >= 0 ? cap.saved : 2;
    if (write(fd, line.data(), line.size()) < 0) return rc;
  }
  std::fflush(stdout);
  _exit(rc);  // LiteRT's static destructors are not needed (and can log)
}
