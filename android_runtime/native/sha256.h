// SHA-256 of a file (FIPS 180-4), to check each segment against the plan's sha256 before LiteRT
// maps it: a truncated .tflite would otherwise crash inside LiteRT (SIGBUS on the mapping).
#ifndef NNSPLICE_NATIVE_SHA256_H_
#define NNSPLICE_NATIVE_SHA256_H_

#include <string>

namespace nnsplice {

// Lower-case hex digest of the file, or "" when it cannot be read.
std::string Sha256File(const std::string& path);

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_SHA256_H_
