// The part of LiteRT's C API (CompiledModel, ai-edge-litert 2.3.0's libLiteRt.so) that the native
// plan runner uses. The wheel ships no headers: these declarations were written against
// google-ai-edge/LiteRT litert/c/*.h and checked against the wheel's behaviour (see
// android_runtime/native/README.md). Only what the runner calls is declared.
//
// The library is opened with dlopen at start-up (LiteRtApi::Load), so a missing library or a
// missing symbol is a one-line error instead of a loader failure.
#ifndef NNSPLICE_NATIVE_LITERT_C_H_
#define NNSPLICE_NATIVE_LITERT_C_H_

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <vector>

extern "C" {

// Opaque handles.
typedef struct LiteRtEnvironmentT* LiteRtEnvironment;
typedef struct LiteRtModelT* LiteRtModel;
typedef struct LiteRtSignatureT* LiteRtSignature;
typedef struct LiteRtTensorT* LiteRtTensor;
typedef struct LiteRtOptionsT* LiteRtOptions;
typedef struct LiteRtOpaqueOptionsT* LiteRtOpaqueOptions;
typedef struct LiteRtCompiledModelT* LiteRtCompiledModel;
typedef struct LiteRtTensorBufferT* LiteRtTensorBuffer;
typedef struct LiteRtTensorBufferRequirementsT* LiteRtTensorBufferRequirements;
typedef struct LiteRtAcceleratorT* LiteRtAccelerator;

typedef int LiteRtStatus;  // 0 = ok
typedef size_t LiteRtParamIndex;
typedef int LiteRtHwAcceleratorSet;  // bit field of the values below

enum {
  kLiteRtStatusOk = 0,
  kLiteRtHwAcceleratorCpu = 1 << 0,
  kLiteRtHwAcceleratorGpu = 1 << 1,
  kLiteRtHwAcceleratorNpu = 1 << 2,
  kLiteRtTensorBufferTypeHostMemory = 1,
  kLiteRtTensorBufferLockModeRead = 0,
  kLiteRtTensorBufferLockModeWrite = 1,
  kLiteRtElementTypeFloat32 = 1,
  kLiteRtElementTypeInt8 = 9,
  kLiteRtElementTypeUInt8 = 3,
  kLiteRtElementTypeInt16 = 7,
  kLiteRtQuantizationNone = 0,
  kLiteRtQuantizationPerTensor = 1,
  kLitertTensorMaxRank = 8,
  kLiteRtAnyTypeString = 8,
  kLiteRtEnvOptionTagDispatchLibraryDir = 1,  // where the NPU dispatch library is
};

typedef struct {
  int major;
  int minor;
  int patch;
} LiteRtApiVersion;

// Shape of a ranked tensor (litert_layout.h). `rank` and `has_strides` share the first 32 bits.
typedef struct {
  unsigned int rank : 7;
  bool has_strides : 1;
  int32_t dimensions[kLitertTensorMaxRank];
  uint32_t strides[kLitertTensorMaxRank];
} LiteRtLayout;

typedef struct {
  int element_type;  // LiteRtElementType
  LiteRtLayout layout;
} LiteRtRankedTensorType;

// A tagged value (litert_any.h), used by environment options.
typedef struct {
  int type;  // 8 = string
  union {
    bool bool_value;
    int64_t int_value;
    double real_value;
    const char* str_value;
    const void* ptr_value;
  };
} LiteRtAny;

typedef struct {
  int tag;  // kLiteRtEnvOptionTag*
  LiteRtAny value;
} LiteRtEnvOption;

typedef struct {
  float scale;
  int64_t zero_point;
} LiteRtQuantizationPerTensor;

}  // extern "C"

namespace nnsplice {

// Function table of libLiteRt.so, resolved with dlsym at start-up.
struct LiteRtApi {
  // Environment and accelerators.
  LiteRtStatus (*CreateEnvironment)(int num_options, const LiteRtEnvOption* options, LiteRtEnvironment* env);
  void (*DestroyEnvironment)(LiteRtEnvironment env);
  LiteRtStatus (*GetNumAccelerators)(LiteRtEnvironment env, LiteRtParamIndex* n);
  LiteRtStatus (*GetAccelerator)(LiteRtEnvironment env, LiteRtParamIndex i, LiteRtAccelerator* acc);
  LiteRtStatus (*GetAcceleratorName)(LiteRtAccelerator acc, const char** name);
  LiteRtStatus (*GetAcceleratorVersion)(LiteRtAccelerator acc, LiteRtApiVersion* version);
  LiteRtStatus (*GetAcceleratorHardwareSupport)(LiteRtAccelerator acc, LiteRtHwAcceleratorSet* hw);
  // Model and signature. In this wheel the environment comes first (older headers: no env).
  LiteRtStatus (*CreateModelFromFile)(LiteRtEnvironment env, const char* path, LiteRtModel* model);
  void (*DestroyModel)(LiteRtModel model);
  LiteRtStatus (*GetNumModelSignatures)(LiteRtModel model, LiteRtParamIndex* n);
  LiteRtStatus (*GetModelSignature)(LiteRtModel model, LiteRtParamIndex i, LiteRtSignature* sig);
  LiteRtStatus (*GetSignatureKey)(LiteRtSignature sig, const char** key);
  LiteRtStatus (*GetNumSignatureInputs)(LiteRtSignature sig, LiteRtParamIndex* n);
  LiteRtStatus (*GetSignatureInputName)(LiteRtSignature sig, LiteRtParamIndex i, const char** name);
  LiteRtStatus (*GetSignatureInputTensorByIndex)(LiteRtSignature sig, LiteRtParamIndex i, LiteRtTensor* t);
  LiteRtStatus (*GetNumSignatureOutputs)(LiteRtSignature sig, LiteRtParamIndex* n);
  LiteRtStatus (*GetSignatureOutputName)(LiteRtSignature sig, LiteRtParamIndex i, const char** name);
  LiteRtStatus (*GetSignatureOutputTensorByIndex)(LiteRtSignature sig, LiteRtParamIndex i, LiteRtTensor* t);
  LiteRtStatus (*GetRankedTensorType)(LiteRtTensor t, LiteRtRankedTensorType* type);
  LiteRtStatus (*GetQuantizationTypeId)(LiteRtTensor t, int* q_type);
  LiteRtStatus (*GetPerTensorQuantization)(LiteRtTensor t, LiteRtQuantizationPerTensor* q);
  // Compilation options.
  LiteRtStatus (*CreateOptions)(LiteRtOptions* options);
  void (*DestroyOptions)(LiteRtOptions options);
  LiteRtStatus (*SetOptionsHardwareAccelerators)(LiteRtOptions options, LiteRtHwAcceleratorSet hw);
  LiteRtStatus (*CreateOpaqueOptions)(const char* identifier, void* payload, void (*destructor)(void*),
                                      LiteRtOpaqueOptions* opaque);
  void (*DestroyOpaqueOptions)(LiteRtOpaqueOptions opaque);
  LiteRtStatus (*AddOpaqueOptions)(LiteRtOptions options, LiteRtOpaqueOptions opaque);
  // Compiled model.
  LiteRtStatus (*CreateCompiledModel)(LiteRtEnvironment env, LiteRtModel model, LiteRtOptions options,
                                      LiteRtCompiledModel* compiled);
  void (*DestroyCompiledModel)(LiteRtCompiledModel compiled);
  LiteRtStatus (*GetCompiledModelInputBufferRequirements)(LiteRtCompiledModel cm, LiteRtParamIndex sig,
                                                          LiteRtParamIndex i, LiteRtTensorBufferRequirements* r);
  LiteRtStatus (*GetCompiledModelOutputBufferRequirements)(LiteRtCompiledModel cm, LiteRtParamIndex sig,
                                                           LiteRtParamIndex i, LiteRtTensorBufferRequirements* r);
  LiteRtStatus (*RunCompiledModel)(LiteRtCompiledModel cm, LiteRtParamIndex sig, size_t n_in,
                                   LiteRtTensorBuffer* in, size_t n_out, LiteRtTensorBuffer* out);
  LiteRtStatus (*CompiledModelIsFullyAccelerated)(LiteRtCompiledModel cm, bool* fully);
  // Tensor buffers.
  LiteRtStatus (*GetTensorBufferRequirementsBufferSize)(LiteRtTensorBufferRequirements r, size_t* size);
  LiteRtStatus (*GetNumTensorBufferRequirementsSupportedBufferTypes)(LiteRtTensorBufferRequirements r, int* n);
  LiteRtStatus (*GetTensorBufferRequirementsSupportedTensorBufferType)(LiteRtTensorBufferRequirements r, int i,
                                                                       int* type);
  LiteRtStatus (*CreateManagedTensorBufferFromRequirements)(LiteRtEnvironment env,
                                                            const LiteRtRankedTensorType* type,
                                                            LiteRtTensorBufferRequirements r,
                                                            LiteRtTensorBuffer* buffer);
  LiteRtStatus (*CreateManagedTensorBuffer)(LiteRtEnvironment env, int buffer_type,
                                            const LiteRtRankedTensorType* type, size_t size,
                                            LiteRtTensorBuffer* buffer);
  // A buffer over memory the caller owns (deallocator may be null): the runner's per-consumer views.
  LiteRtStatus (*CreateTensorBufferFromHostMemory)(const LiteRtRankedTensorType* type, void* addr, size_t size,
                                                   void (*deallocator)(void*), LiteRtTensorBuffer* buffer);
  void (*DestroyTensorBuffer)(LiteRtTensorBuffer buffer);
  LiteRtStatus (*GetTensorBufferType)(LiteRtTensorBuffer buffer, int* type);
  LiteRtStatus (*GetTensorBufferHostMemory)(LiteRtTensorBuffer buffer, void** addr);
  LiteRtStatus (*LockTensorBuffer)(LiteRtTensorBuffer buffer, void** addr, int mode);
  LiteRtStatus (*UnlockTensorBuffer)(LiteRtTensorBuffer buffer);

  std::string library_path;    // the library that was opened
  std::string symbol_version;  // the ELF symbol version every function was resolved at

  // Opens the library (`path`, else libLiteRt.so next to the executable, else the loader's search
  // path) and resolves every function at symbol version VERS_1.0. Throws EnvError naming what is
  // missing and the remedy.
  static LiteRtApi Load(const std::string& path, const std::string& exe_dir);
};

// Throws InternalError naming the call, the status and `what` when `status` is not ok.
void Check(LiteRtStatus status, const char* call, const std::string& what);

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_LITERT_C_H_
