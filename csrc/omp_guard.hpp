// An exception thrown inside an OpenMP parallel region must not leave it (the runtime calls
// std::terminate): every parallel region that can throw (allocation, sort buffers) runs its work
// through one OmpGuard, which keeps the first exception, skips the remaining work, and rethrows
// after the region, where pybind11 converts it (std::bad_alloc -> MemoryError, ...).
//
//   OmpGuard guard;
//   #pragma omp parallel
//   {
//     std::vector<double> buf;
//     const bool ready = guard.run([&] { buf.resize(B); });   // per-thread set-up
//   #pragma omp for
//     for (int64_t t = 0; t < T; ++t)
//       if (ready) guard.run([&] { ...work on t... });          // every thread reaches the for
//   }
//   guard.rethrow();
#pragma once
#include <atomic>
#include <exception>
#include <mutex>

namespace fastmlem {

class OmpGuard {
 public:
  // Runs f unless an earlier call failed; returns whether f ran to completion.
  template <typename F>
  bool run(F&& f) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return false;
    try {
      f();
      return true;
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
      return false;
    }
  }
  // After the parallel region: rethrow the first exception caught, if any.
  void rethrow() const {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr first_;
};

}  // namespace fastmlem
