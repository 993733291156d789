#include "plan.h"

#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

#include "errors.h"
#include "json.h"

namespace nnsplice {
namespace {

class Reader {
 public:
  explicit Reader(const std::string& file) : file_(file) {}

  [[noreturn]] void Fail(const std::string& key, const std::string& why) const {
    throw UserError(file_ + ": " + key + " " + why);
  }
  const Json& Get(const Json& obj, const std::string& key, const std::string& where, Json::Type t,
                  const char* want) const {
    const Json* v = obj.find(key);
    std::string full = where.empty() ? key : where + "." + key;
    if (v == nullptr) Fail(full, "is missing: malformed plan");
    if (!v->is(t)) Fail(full, std::string("is ") + v->type_name() + ", expected " + want);
    return *v;
  }
  std::string Str(const Json& o, const std::string& k, const std::string& w) const {
    return Get(o, k, w, Json::Type::kString, "a string").as_string();
  }
  int64_t Int(const Json& v, const std::string& where) const {
    if (!v.is(Json::Type::kNumber) || v.as_number() != static_cast<double>(static_cast<int64_t>(v.as_number()))) {
      Fail(where, std::string("is ") + v.type_name() + ", expected an integer");
    }
    return static_cast<int64_t>(v.as_number());
  }
  TensorSpec Tensor(const Json& t, const std::string& where) const {
    if (!t.is(Json::Type::kObject)) Fail(where, "is not an object");
    TensorSpec s;
    s.name = Str(t, "name", where);
    const Json& shape = Get(t, "shape", where, Json::Type::kArray, "a list of integers");
    for (size_t i = 0; i < shape.as_array().size(); ++i) {
      int64_t d = Int(shape.as_array()[i], where + ".shape[" + std::to_string(i) + "]");
      if (d <= 0) Fail(where + ".shape", "has dimension " + std::to_string(d) + ": static positive sizes only");
      s.shape.push_back(d);
    }
    const Json* dt = t.find("dtype");
    s.dtype = (dt && dt->is(Json::Type::kString)) ? dt->as_string() : "float32";
    if (s.dtype != "float32") Fail(where + ".dtype", "= '" + s.dtype + "': segments exchange float32 only");
    return s;
  }

 private:
  std::string file_;
};

// A stage's {"b": segment} map, checked: batch sizes 1..batch, segments of the plan.
std::vector<std::pair<int, std::string>> BatchMap(const Reader& r, const Json& m, const std::string& where, int batch,
                                                  const std::set<std::string>& names) {
  if (!m.is(Json::Type::kObject)) r.Fail(where, std::string("is ") + m.type_name() + ", expected an object");
  std::vector<std::pair<int, std::string>> out;
  for (const auto& kv : m.as_object()) {
    char* end = nullptr;
    long b = std::strtol(kv.first.c_str(), &end, 10);
    if (kv.first.empty() || *end != '\0' || b < 1 || b > batch) {
      r.Fail(where, "has batch size '" + kv.first + "': 1.." + std::to_string(batch));
    }
    if (!kv.second.is(Json::Type::kString) || !names.count(kv.second.as_string())) {
      r.Fail(where + "." + kv.first, "is not a segment of the plan");
    }
    out.emplace_back(static_cast<int>(b), kv.second.as_string());
  }
  return out;
}

std::string LaneList(const Plan& p) {
  std::string all;
  for (const auto& l : p.lanes) all += (all.empty() ? "" : ", ") + l.name;
  return all;
}

// An overlap plan (android_runtime/plan.py _check_overlap): every head on a lane other than the next
// stage's, every later stage in chunks.
void CheckOverlap(const Reader& r, const ExitsSpec& ex) {
  for (size_t i = 0; i < ex.stages.size(); ++i) {
    const std::string w = "exits.stages[" + std::to_string(i) + "]";
    const std::string& hl = ex.stages[i].head_lane;
    if (i + 1 < ex.stages.size() && (hl.empty() || hl == ex.stages[i + 1].lane)) {
      r.Fail(w + ".head_lane", "= '" + hl + "': an overlap plan runs each head on a lane other "
                               "than the next stage's ('" + ex.stages[i + 1].lane + "')");
    }
    if (i > 0 && ex.stages[i].chunks.empty()) {
      r.Fail(w + ".chunks", "is empty: an overlap plan needs the stage's body in chunks");
    }
  }
}

// The "exits" section of a version-2 plan (android_runtime/plan.py ExitPlan).
void ReadExits(const Reader& r, const Json& ex, Plan* p) {
  if (p->version < 2) r.Fail("exits", "in a version-1 plan: exits need version 2");
  if (!ex.is(Json::Type::kObject)) r.Fail("exits", "is not an object");
  const Json* overlap = ex.find("overlap");
  if (overlap != nullptr && !overlap->is(Json::Type::kBool) && !overlap->is(Json::Type::kNull)) {
    r.Fail("exits.overlap", std::string("is ") + overlap->type_name() + ", expected true or false");
  }
  p->exits.overlap = overlap != nullptr && overlap->is(Json::Type::kBool) && overlap->as_bool();
  const Json* b = ex.find("batch");
  if (b == nullptr) r.Fail("exits.batch", "is missing: malformed plan");
  int64_t batch = r.Int(*b, "exits.batch");
  if (batch < 1 || batch > 4096) r.Fail("exits.batch", "= " + std::to_string(batch) + ": 1-4096 allowed");
  if (p->input.shape.empty() || p->input.shape[0] != batch) {
    r.Fail("exits.batch", "= " + std::to_string(batch) + ": the plan input's first dimension differs");
  }
  std::set<std::string> names, lanes;
  for (const auto& s : p->segments) names.insert(s.name);
  for (const auto& l : p->lanes) lanes.insert(l.name);
  const Json& stages = r.Get(ex, "stages", "exits", Json::Type::kArray, "a list of stages");
  if (stages.as_array().empty()) r.Fail("exits.stages", "is empty");
  p->exits.batch = static_cast<int>(batch);
  for (size_t i = 0; i < stages.as_array().size(); ++i) {
    const Json& s = stages.as_array()[i];
    std::string w = "exits.stages[" + std::to_string(i) + "]";
    if (!s.is(Json::Type::kObject)) r.Fail(w, "is not an object");
    ExitStageSpec st;
    st.lane = r.Str(s, "lane", w);
    if (!lanes.count(st.lane)) r.Fail(w + ".lane", "= '" + st.lane + "': not among the plan's lanes");
    st.body = BatchMap(r, r.Get(s, "body", w, Json::Type::kObject, "an object"), w + ".body", p->exits.batch, names);
    const Json* head = s.find("head");
    if (head != nullptr && !head->is(Json::Type::kNull)) st.head = BatchMap(r, *head, w + ".head", p->exits.batch, names);
    const Json* th = s.find("threshold");
    st.has_threshold = th != nullptr && th->is(Json::Type::kNumber);
    st.threshold = st.has_threshold ? th->as_number() : 0;
    bool last = i + 1 == stages.as_array().size();
    if (last == (st.has_threshold && !st.head.empty())) {
      r.Fail(w, "every stage but the last needs a head and a threshold");
    }
    const Json* hl = s.find("head_lane");
    if (hl != nullptr && !hl->is(Json::Type::kNull)) {
      if (!hl->is(Json::Type::kString)) {
        r.Fail(w + ".head_lane", std::string("is ") + hl->type_name() + ", expected a lane name");
      }
      st.head_lane = hl->as_string();
      if (!st.head_lane.empty() && !lanes.count(st.head_lane)) {
        r.Fail(w + ".head_lane", "= '" + st.head_lane + "': not among the plan's lanes [" + LaneList(*p) + "]");
      }
    }
    const Json* ch = s.find("chunks");
    if (ch != nullptr && !ch->is(Json::Type::kNull)) {
      if (!ch->is(Json::Type::kArray)) {
        r.Fail(w + ".chunks", std::string("is ") + ch->type_name() + ", expected a list");
      }
      for (size_t j = 0; j < ch->as_array().size(); ++j) {
        const Json& c = ch->as_array()[j];
        if (!c.is(Json::Type::kString) || !names.count(c.as_string())) {
          r.Fail(w + ".chunks[" + std::to_string(j) + "]", "is not a segment of the plan");
        }
        st.chunks.push_back(c.as_string());
      }
    }
    p->exits.stages.push_back(st);
  }
  if (p->exits.overlap) CheckOverlap(r, p->exits);
  p->has_exits = true;
}

}  // namespace

const LaneSpec& Plan::lane(const std::string& n) const {
  for (const auto& l : lanes) {
    if (l.name == n) return l;
  }
  throw UserError(path + ": no lane " + n);
}

Plan LoadPlan(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw UserError(path + ": plan file not found or not readable");
  std::stringstream ss;
  ss << f.rdbuf();
  Json d;
  try {
    d = Json::Parse(ss.str());
  } catch (const std::runtime_error& e) {
    throw UserError(path + ": not a readable plan JSON (" + e.what() + ")");
  }
  Reader r(path);
  if (!d.is(Json::Type::kObject)) r.Fail("(top level)", "is not an object");
  const Json* ver = d.find("version");
  if (ver == nullptr || !ver->is(Json::Type::kNumber) || (ver->as_number() != 1 && ver->as_number() != kPlanVersion)) {
    r.Fail("version", "= " + std::string(ver ? (ver->is(Json::Type::kNumber) ? JsonNumber(ver->as_number(), 0)
                                                                               : ver->type_name()) : "missing") +
                          ": this runner reads plan version 1 or " + std::to_string(kPlanVersion));
  }
  Plan p;
  p.version = static_cast<int>(ver->as_number());
  p.path = path;
  size_t slash = path.rfind('/');
  p.dir = slash == std::string::npos ? "." : path.substr(0, slash);
  p.name = r.Str(d, "name", "");
  p.dtype = r.Str(d, "dtype", "");
  p.input = r.Tensor(r.Get(d, "input", "", Json::Type::kObject, "an object"), "input");
  p.output = r.Tensor(r.Get(d, "output", "", Json::Type::kObject, "an object"), "output");
  const Json& lanes = r.Get(d, "lanes", "", Json::Type::kObject, "an object of lanes");
  if (lanes.as_object().empty()) r.Fail("lanes", "is empty");
  for (const auto& kv : lanes.as_object()) {
    std::string w = "lanes." + kv.first;
    LaneSpec l;
    l.name = kv.first;
    const Json& cores = r.Get(kv.second, "cores", w, Json::Type::kArray, "a list of core numbers");
    for (size_t i = 0; i < cores.as_array().size(); ++i) {
      int64_t c = r.Int(cores.as_array()[i], w + ".cores[" + std::to_string(i) + "]");
      if (c < 0 || c >= 1024) r.Fail(w + ".cores", "has " + std::to_string(c) + ": core numbers are 0-1023");
      l.cores.push_back(static_cast<int>(c));
    }
    if (l.cores.empty()) r.Fail(w + ".cores", "is empty: a lane needs at least one core");
    const Json& th = r.Get(kv.second, "threads", w, Json::Type::kNumber, "an integer");
    int64_t threads = r.Int(th, w + ".threads");
    if (threads < 1 || threads > 64) r.Fail(w + ".threads", "= " + std::to_string(threads) + ": 1-64 allowed");
    l.threads = static_cast<int>(threads);
    l.delegate = r.Str(kv.second, "delegate", w);
    p.lanes.push_back(l);
  }
  for (auto& l : p.lanes) AcceleratorOf(p, l);  // rejects unknown delegates now
  const Json& segs = r.Get(d, "segments", "", Json::Type::kArray, "a list of segments");
  if (segs.as_array().empty()) r.Fail("segments", "is empty");
  std::set<std::string> names;
  for (size_t i = 0; i < segs.as_array().size(); ++i) {
    const Json& s = segs.as_array()[i];
    std::string w = "segments[" + std::to_string(i) + "]";
    if (!s.is(Json::Type::kObject)) r.Fail(w, "is not an object");
    SegmentSpec seg;
    seg.name = r.Str(s, "name", w);
    w = "segment " + seg.name;
    if (!names.insert(seg.name).second) r.Fail(w, "appears twice");
    seg.lane = r.Str(s, "lane", w);
    seg.file = r.Str(s, "file", w);
    seg.sha256 = r.Str(s, "sha256", w);
    if (seg.file.empty() || seg.file.find("..") != std::string::npos || seg.file[0] == '/') {
      r.Fail(w + " file", "= '" + seg.file + "': a file name inside the plan's folder");
    }
    const Json& ins = r.Get(s, "inputs", w, Json::Type::kArray, "a list of tensors");
    for (size_t j = 0; j < ins.as_array().size(); ++j) {
      seg.inputs.push_back(r.Tensor(ins.as_array()[j], w + " inputs[" + std::to_string(j) + "]"));
    }
    const Json& outs = r.Get(s, "outputs", w, Json::Type::kArray, "a list of tensors");
    for (size_t j = 0; j < outs.as_array().size(); ++j) {
      seg.outputs.push_back(r.Tensor(outs.as_array()[j], w + " outputs[" + std::to_string(j) + "]"));
    }
    if (seg.outputs.empty()) r.Fail(w + " outputs", "is empty");
    p.segments.push_back(seg);
  }
  r.Get(d, "sync_points", "", Json::Type::kArray, "a list");
  // check_plan: lanes exist, every input is produced earlier (with the same shape), the output is produced.
  std::set<std::string> lane_names;
  for (const auto& l : p.lanes) lane_names.insert(l.name);
  std::vector<TensorSpec> produced = {p.input};
  auto find = [&](const std::string& n) -> const TensorSpec* {
    for (const auto& t : produced) {
      if (t.name == n) return &t;
    }
    return nullptr;
  };
  for (const auto& s : p.segments) {
    if (!lane_names.count(s.lane)) {
      std::string all;
      for (const auto& l : p.lanes) all += (all.empty() ? "" : ", ") + l.name;
      r.Fail("segment " + s.name + " lane", "= '" + s.lane + "': not among lanes [" + all + "]");
    }
    for (const auto& t : s.inputs) {
      const TensorSpec* src = find(t.name);
      if (src == nullptr) r.Fail("segment " + s.name + " input", "'" + t.name + "' is not produced by an earlier segment");
      if (src->shape != t.shape) r.Fail("segment " + s.name + " input '" + t.name + "'", "shape differs from its producer's");
    }
    for (const auto& t : s.outputs) {
      if (find(t.name)) r.Fail("segment " + s.name + " output", "'" + t.name + "' is produced twice");
      produced.push_back(t);
    }
  }
  if (!find(p.output.name)) r.Fail("output", "'" + p.output.name + "' is produced by no segment");
  const Json* ex = d.find("exits");
  if (ex != nullptr && !ex->is(Json::Type::kNull)) ReadExits(r, *ex, &p);
  return p;
}

std::vector<std::string> ResultNames(const Plan& plan) {
  std::set<std::string> consumed;
  for (const auto& s : plan.segments) {
    for (const auto& t : s.inputs) consumed.insert(t.name);
  }
  std::vector<std::string> names;
  bool has_output = false;
  for (const auto& s : plan.segments) {
    for (const auto& t : s.outputs) {
      if (!consumed.count(t.name)) {
        names.push_back(t.name);
        has_output = has_output || t.name == plan.output.name;
      }
    }
  }
  if (!has_output) names.push_back(plan.output.name);
  return names;
}

std::string AcceleratorOf(const Plan& plan, const LaneSpec& lane) {
  const std::string& d = lane.delegate;
  if (d == "xnnpack" || d == "cpu" || d == "builtin") return "cpu";
  if (d == "gpu") return "gpu";
  if (d == "hexagon" || d == "npu" || d == "dsp") return "npu";
  throw UserError(plan.path + ": lanes." + lane.name + ".delegate = '" + d +
                  "': the native runner runs xnnpack|cpu|builtin (CPU), gpu (GPU), npu (NPU; legacy hexagon|dsp); nnapi is "
                  "not a LiteRT accelerator: map the lane to gpu or npu");
}

}  // namespace nnsplice
