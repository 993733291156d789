// Errors of the native plan runner, in the families of nnsplice's STYLE.md: a bad argument, plan,
// model file or input (exit 2), the device or environment lacks something (exit 3, with the
// remedy), an internal failure (exit 1). Every one is printed as one line by main().
#ifndef NNSPLICE_NATIVE_ERRORS_H_
#define NNSPLICE_NATIVE_ERRORS_H_

#include <stdexcept>
#include <string>

namespace nnsplice {

class NativeError : public std::runtime_error {
 public:
  NativeError(int exit_code, const std::string& msg) : std::runtime_error(msg), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

// Bad argument, plan, model file or input: exit 2.
class UserError : public NativeError {
 public:
  explicit UserError(const std::string& msg) : NativeError(2, msg) {}
};

// Missing library, accelerator or device feature: exit 3.
class EnvError : public NativeError {
 public:
  explicit EnvError(const std::string& msg) : NativeError(3, msg) {}
};

// A failure of the runner or of LiteRT at run time: exit 1.
class InternalError : public NativeError {
 public:
  explicit InternalError(const std::string& msg) : NativeError(1, msg) {}
};

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_ERRORS_H_
