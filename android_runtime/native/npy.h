// .npy files (NumPy format 1.0/2.0) of little-endian float32, C order: the runner's --input and
// its --outputs files.
#ifndef NNSPLICE_NATIVE_NPY_H_
#define NNSPLICE_NATIVE_NPY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace nnsplice {

struct NpyArray {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Reads a float32 (or float64, converted) C-order array. Throws UserError naming the file.
NpyArray ReadNpy(const std::string& path);

// Writes a float32 array. Throws InternalError when the file cannot be written.
void WriteNpy(const std::string& path, const std::vector<int64_t>& shape, const float* data);

}  // namespace nnsplice

#endif  // NNSPLICE_NATIVE_NPY_H_
