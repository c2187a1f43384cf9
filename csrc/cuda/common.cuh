// Helpers shared by the .cu files: error checks, launch sizes, workspace carving.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fastmlem {
namespace cuda {

inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string("fastmlem._cuda: ") + what + ": " + cudaGetErrorString(err));
}

// After a kernel launch: report a bad configuration or an earlier asynchronous fault.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

// Grid for a grid-stride loop over `items` with `threads` per block, capped well below the
// 2^31 - 1 limit on gridDim.x (the loops cover the rest).
inline unsigned grid_for(int64_t items, int threads, int64_t cap = 1 << 20) {
  int64_t blocks = (items + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  return static_cast<unsigned>(blocks < cap ? blocks : cap);
}

// Carves aligned sub-buffers out of one workspace; with base == nullptr it only measures.
class Carver {
 public:
  explicit Carver(void* base = nullptr) : base_(static_cast<char*>(base)) {}
  template <typename T>
  T* take(int64_t count) {
    offset_ = (offset_ + 255) / 256 * 256;
    T* p = base_ ? reinterpret_cast<T*>(base_ + offset_) : nullptr;
    offset_ += static_cast<size_t>(count > 0 ? count : 0) * sizeof(T);
    return p;
  }
  void* take_bytes(size_t bytes) { return take<char>(static_cast<int64_t>(bytes)); }
  size_t used() const { return offset_ + 256; }

 private:
  char* base_;
  size_t offset_ = 0;
};

inline void check_workspace(size_t have, size_t need, const char* what) {
  if (have < need)
    throw std::runtime_error(std::string("fastmlem._cuda: ") + what + ": workspace of " +
                             std::to_string(have) + " bytes, needs " + std::to_string(need));
}

}  // namespace cuda
}  // namespace fastmlem
