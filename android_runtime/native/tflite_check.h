// A structural check of a .tflite flatbuffer before LiteRT maps it (as android_runtime/artifacts.py
// does on the host): TFL3 identifier, schema version 3, and every table, vector and buffer that
// LiteRT follows (subgraphs, tensors, operators, buffers, signatures) inside the file. LiteRT
// itself does not verify and crashes (SIGBUS/SIGSEGV) on a truncated file.
#ifndef NNSPLICE_NATIVE_TFLITE_CHECK_H_
#define NNSPLICE_NATIVE_TFLITE_CHECK_H_

#include <string>

namespace nnsplice {

// "" when the file is whole, else what is wrong (e.g. "buffers[3] data ends past the file").
std::string CheckTflite(const std::string& path);

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_TFLITE_CHECK_H_
