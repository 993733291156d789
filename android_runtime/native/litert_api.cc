// Loads libLiteRt.so with dlopen and resolves the functions of litert_c.h.
#include <dlfcn.h>

#include <string>

#include "errors.h"
#include "litert_c.h"

namespace nnsplice {
namespace {

constexpr const char* kSymbolVersion = "VERS_1.0";  // what the 2.3.0 wheel exports

// Resolves `name` at kSymbolVersion, else unversioned (then clears `*versioned`).
template <typename F>
void Resolve(void* lib, const char* name, F* fn, const std::string& path, bool* versioned) {
  void* sym = dlvsym(lib, name, kSymbolVersion);
  if (sym == nullptr) {
    sym = dlsym(lib, name);  // a build without symbol versions (e.g. an Android release)
    *versioned = false;
  }
  if (sym == nullptr) {
    throw EnvError(path + " has no " + name + " (@" + kSymbolVersion +
                   "): it is not the LiteRT the runner was built for (ai-edge-litert 2.3.0); "
                   "rebuild with setup.sh or pass --litert_lib of that version");
  }
  *fn = reinterpret_cast<F>(sym);
}

}  // namespace

LiteRtApi LiteRtApi::Load(const std::string& path, const std::string& exe_dir) {
  std::vector<std::string> tries;
  if (!path.empty()) {
    tries.push_back(path);
  } else {
    tries.push_back(exe_dir + "/libLiteRt.so");
    tries.push_back("libLiteRt.so");  // LD_LIBRARY_PATH / the loader's default paths
  }
  void* lib = nullptr;
  std::string last_error, opened;
  for (const auto& p : tries) {
    lib = dlopen(p.c_str(), RTLD_NOW | RTLD_GLOBAL);  // accelerator libraries may bind to it
    if (lib != nullptr) {
      opened = p;
      break;
    }
    const char* e = dlerror();
    last_error = e ? e : "unknown dlopen error";
  }
  if (lib == nullptr) {
    throw EnvError("cannot load libLiteRt.so (" + last_error + "); pass --litert_lib PATH, put it next to the "
                   "runner or on LD_LIBRARY_PATH (the ai-edge-litert wheel's copy: setup.sh links to it)");
  }
  LiteRtApi a{};
  const std::string& p = opened;
  bool versioned = true;
#define NNS_RESOLVE(field) Resolve(lib, "LiteRt" #field, &a.field, p, &versioned)
  NNS_RESOLVE(CreateEnvironment);
  NNS_RESOLVE(DestroyEnvironment);
  NNS_RESOLVE(GetNumAccelerators);
  NNS_RESOLVE(GetAccelerator);
  NNS_RESOLVE(GetAcceleratorName);
  NNS_RESOLVE(GetAcceleratorVersion);
  NNS_RESOLVE(GetAcceleratorHardwareSupport);
  NNS_RESOLVE(CreateModelFromFile);
  NNS_RESOLVE(DestroyModel);
  NNS_RESOLVE(GetNumModelSignatures);
  NNS_RESOLVE(GetModelSignature);
  NNS_RESOLVE(GetSignatureKey);
  NNS_RESOLVE(GetNumSignatureInputs);
  NNS_RESOLVE(GetSignatureInputName);
  NNS_RESOLVE(GetSignatureInputTensorByIndex);
  NNS_RESOLVE(GetNumSignatureOutputs);
  NNS_RESOLVE(GetSignatureOutputName);
  NNS_RESOLVE(GetSignatureOutputTensorByIndex);
  NNS_RESOLVE(GetRankedTensorType);
  NNS_RESOLVE(GetQuantizationTypeId);
  NNS_RESOLVE(GetPerTensorQuantization);
  NNS_RESOLVE(CreateOptions);
  NNS_RESOLVE(DestroyOptions);
  NNS_RESOLVE(SetOptionsHardwareAccelerators);
  NNS_RESOLVE(CreateOpaqueOptions);
  NNS_RESOLVE(DestroyOpaqueOptions);
  NNS_RESOLVE(AddOpaqueOptions);
  NNS_RESOLVE(CreateCompiledModel);
  NNS_RESOLVE(DestroyCompiledModel);
  NNS_RESOLVE(GetCompiledModelInputBufferRequirements);
  NNS_RESOLVE(GetCompiledModelOutputBufferRequirements);
  NNS_RESOLVE(RunCompiledModel);
  NNS_RESOLVE(CompiledModelIsFullyAccelerated);
  NNS_RESOLVE(GetTensorBufferRequirementsBufferSize);
  NNS_RESOLVE(GetNumTensorBufferRequirementsSupportedBufferTypes);
  NNS_RESOLVE(GetTensorBufferRequirementsSupportedTensorBufferType);
  NNS_RESOLVE(CreateManagedTensorBufferFromRequirements);
  NNS_RESOLVE(CreateManagedTensorBuffer);
  NNS_RESOLVE(CreateTensorBufferFromHostMemory);
  NNS_RESOLVE(DestroyTensorBuffer);
  NNS_RESOLVE(GetTensorBufferType);
  NNS_RESOLVE(GetTensorBufferHostMemory);
  NNS_RESOLVE(LockTensorBuffer);
  NNS_RESOLVE(UnlockTensorBuffer);
#undef NNS_RESOLVE
  a.symbol_version = versioned ? kSymbolVersion : "unversioned";
  Dl_info info{};  // the file the functions really come from (dladdr: bionic has no RTLD_DI_ORIGIN)
  a.library_path = dladdr(reinterpret_cast<void*>(a.CreateEnvironment), &info) && info.dli_fname
                       ? info.dli_fname : opened;
  return a;
}

void Check(LiteRtStatus status, const char* call, const std::string& what) {
  if (status != kLiteRtStatusOk) {
    throw InternalError(std::string(call) + " failed with LiteRT status " + std::to_string(status) + " (" +
                        what + ")");
  }
}

}  // namespace nnsplice
