// Stable per-row argsort with CUB radix sorts, average ranks (ties detected on the sorted keys
// with one scan), Pearson of row pairs (deterministic two-pass reduction), exact Spearman.
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "common.cuh"
#include "kernels.hpp"
#include "rank_common.cuh"

namespace fastmlem {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Segmented radix sort runs one thread block per row: right for many short rows. Long rows (or a
// few rows) are sorted one after the other, each by a device-wide radix sort.
bool use_segmented(int64_t T, int64_t B) {
  return T > 1 && B <= 65536 && (T >= 64 || B <= 4096) && T * B < (int64_t(1) << 31);
}

__global__ void sort_keys_kernel(const double* x, int64_t N, int64_t B, bool descending, uint64_t* keys,
                                 int32_t* values) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < N;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t key = order_key(x[k]);
    keys[k] = descending ? ~key : key;
    values[k] = static_cast<int32_t>(k % B);
  }
}

__global__ void offsets_kernel(int64_t T, int64_t B, int32_t* offsets) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t <= T;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x)
    offsets[t] = static_cast<int32_t>(t * B);
}

struct ArgsortPlan {
  uint64_t* keys = nullptr;
  int32_t* values = nullptr;
  int32_t* offsets = nullptr;
  void* temp = nullptr;
  size_t temp_bytes = 0;
};

ArgsortPlan plan_argsort(Carver& carve, int64_t T, int64_t B) {
  ArgsortPlan plan;
  const int64_t N = T * B;
  plan.keys = carve.take<uint64_t>(N);
  plan.values = carve.take<int32_t>(N);
  if (use_segmented(T, B)) {
    plan.offsets = carve.take<int32_t>(T + 1);
    check(cub::DeviceSegmentedRadixSort::SortPairs(nullptr, plan.temp_bytes, plan.keys, plan.keys, plan.values,
                                                   plan.values, static_cast<int>(N), static_cast<int>(T),
                                                   plan.offsets, plan.offsets + 1),
          "argsort (size query)");
  } else {
    check(cub::DeviceRadixSort::SortPairs(nullptr, plan.temp_bytes, plan.keys, plan.keys, plan.values, plan.values,
                                          static_cast<int>(B)),
          "argsort (size query)");
  }
  plan.temp = carve.take_bytes(plan.temp_bytes);
  return plan;
}

struct MaxOp {
  __device__ __forceinline__ int64_t operator()(int64_t a, int64_t b) const { return a > b ? a : b; }
};

// starts[k] = k where a run of equal sorted keys (or a row) begins, else 0; a max-scan then gives
// every position the flat index of its run's start (rows begin runs, so runs never cross rows).
__global__ void run_heads_kernel(const uint64_t* sorted, int64_t N, int64_t B, int64_t* starts) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < N;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    starts[k] = (k % B == 0 || sorted[k] != sorted[k - 1]) ? k : 0;
}

// At the last position e of each run [s, e]: average rank of the run (ranks s+1 .. e+1, row-local),
// stored at the run's start.
__global__ void run_average_kernel(const uint64_t* sorted, const int64_t* starts, int64_t N, int64_t B,
                                   double* avg) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < N;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if (k % B == B - 1 || sorted[k] != sorted[k + 1]) {
      const int64_t s = starts[k], row0 = k - k % B;
      avg[s] = 0.5 * static_cast<double>((s - row0) + (k - row0) + 2);
    }
  }
}

__global__ void scatter_ranks_kernel(const int32_t* order, const int64_t* starts, const double* avg, int64_t N,
                                     int64_t B, double* out) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < N;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[k - k % B + order[k]] = avg[starts[k]];
}

struct RankPlan {
  void* sort_work = nullptr;
  size_t sort_bytes = 0;
  uint64_t* sorted = nullptr;
  int32_t* order = nullptr;
  int64_t* starts = nullptr;
  double* avg = nullptr;
  void* scan_temp = nullptr;
  size_t scan_bytes = 0;
};

RankPlan plan_rank(Carver& carve, int64_t T, int64_t B) {
  RankPlan plan;
  const int64_t N = T * B;
  plan.sort_bytes = argsort_workspace(T, B);
  plan.sort_work = carve.take_bytes(plan.sort_bytes);
  plan.sorted = carve.take<uint64_t>(N);
  plan.order = carve.take<int32_t>(N);
  plan.starts = carve.take<int64_t>(N);
  plan.avg = carve.take<double>(N);
  check(cub::DeviceScan::InclusiveScan(nullptr, plan.scan_bytes, plan.starts, MaxOp(), N), "rank (size query)");
  plan.scan_temp = carve.take_bytes(plan.scan_bytes);
  return plan;
}

// Pearson: per (row, chunk) block partial sums, then one thread per row adds them in order.
int64_t pearson_chunks(int64_t B) {
  const int64_t c = (B + kThreads * 8 - 1) / (kThreads * 8);
  return c < 1 ? 1 : (c < 1024 ? c : 1024);
}

template <int K>
__device__ __forceinline__ void block_sum(double (&v)[K], double (*shared)[K]) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
#pragma unroll
  for (int q = 0; q < K; ++q)
    for (int off = 16; off > 0; off /= 2) v[q] += __shfl_xor_sync(0xFFFFFFFFu, v[q], off);
  if (lane == 0)
#pragma unroll
    for (int q = 0; q < K; ++q) shared[warp][q] = v[q];
  __syncthreads();
  if (threadIdx.x == 0)
#pragma unroll
    for (int q = 0; q < K; ++q) {
      double s = 0.0;
      for (int w = 0; w < warps; ++w) s += shared[w][q];
      v[q] = s;
    }
}

// Pass 1 (means == nullptr): sums of x and y. Pass 2: centred sums xx, yy, xy.
template <bool CENTRED>
__global__ void pearson_partial_kernel(const double* x, const double* y, int64_t y_stride, int64_t B,
                                       int64_t chunks, const double* means, double* partial) {
  constexpr int K = CENTRED ? 3 : 2;
  __shared__ double shared[32][K];
  const int64_t t = blockIdx.x / chunks, c = blockIdx.x % chunks;
  const double* xr = x + t * B;
  const double* yr = y + t * y_stride;
  const double mx = CENTRED ? means[2 * t] : 0.0, my = CENTRED ? means[2 * t + 1] : 0.0;
  double v[K] = {};
  for (int64_t k = c * blockDim.x + threadIdx.x; k < B; k += chunks * blockDim.x) {
    const double a = xr[k] - mx, b = yr[k] - my;
    if (CENTRED) { v[0] += a * a; v[1] += b * b; v[2] += a * b; }
    else { v[0] += a; v[1] += b; }
  }
  block_sum<K>(v, shared);
  if (threadIdx.x == 0)
    for (int q = 0; q < K; ++q) partial[(t * chunks + c) * K + q] = v[q];
}

__global__ void pearson_means_kernel(const double* partial, int64_t T, int64_t B, int64_t chunks, double* means) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < T;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double sx = 0, sy = 0;
    for (int64_t c = 0; c < chunks; ++c) { sx += partial[(t * chunks + c) * 2]; sy += partial[(t * chunks + c) * 2 + 1]; }
    means[2 * t] = sx / static_cast<double>(B);
    means[2 * t + 1] = sy / static_cast<double>(B);
  }
}

__global__ void pearson_final_kernel(const double* partial, int64_t T, int64_t chunks, double* out) {
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < T;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    double xx = 0, yy = 0, xy = 0;
    for (int64_t c = 0; c < chunks; ++c) {
      const double* p = partial + (t * chunks + c) * 3;
      xx += p[0]; yy += p[1]; xy += p[2];
    }
    const double den = sqrt(xx * yy);
    out[t] = den > 0 ? xy / den : 0.0;
  }
}

}  // namespace

size_t argsort_workspace(int64_t T, int64_t B) {
  Carver c;
  plan_argsort(c, T, B);
  return c.used();
}

void argsort_rows(const double* x, int64_t T, int64_t B, bool descending, int32_t* order, uint64_t* sorted_keys,
                  void* work, size_t work_bytes, cudaStream_t stream) {
  const int64_t N = T * B;
  if (N <= 0) return;
  if (B >= (int64_t(1) << 31)) throw std::runtime_error("fastmlem._cuda: rows must be shorter than 2^31");
  check_workspace(work_bytes, argsort_workspace(T, B), "argsort_rows");
  Carver carve(work);
  ArgsortPlan plan = plan_argsort(carve, T, B);
  sort_keys_kernel<<<grid_for(N, kThreads), kThreads, 0, stream>>>(x, N, B, descending, plan.keys, plan.values);
  check_launch("argsort_rows (keys)");
  if (use_segmented(T, B)) {
    offsets_kernel<<<grid_for(T + 1, kThreads), kThreads, 0, stream>>>(T, B, plan.offsets);
    check_launch("argsort_rows (offsets)");
    check(cub::DeviceSegmentedRadixSort::SortPairs(plan.temp, plan.temp_bytes, plan.keys, sorted_keys, plan.values,
                                                   order, static_cast<int>(N), static_cast<int>(T), plan.offsets,
                                                   plan.offsets + 1, 0, 64, stream),
          "argsort_rows (segmented sort)");
  } else {
    for (int64_t t = 0; t < T; ++t)  // values of row 0 are 0..B-1: the same for every row
      check(cub::DeviceRadixSort::SortPairs(plan.temp, plan.temp_bytes, plan.keys + t * B, sorted_keys + t * B,
                                            plan.values, order + t * B, static_cast<int>(B), 0, 64, stream),
            "argsort_rows (sort)");
  }
}

size_t rank_workspace(int64_t T, int64_t B) {
  Carver c;
  plan_rank(c, T, B);
  return c.used();
}

void rank_average(const double* x, int64_t T, int64_t B, double* out, void* work, size_t work_bytes,
                  cudaStream_t stream) {
  const int64_t N = T * B;
  if (N <= 0) return;
  check_workspace(work_bytes, rank_workspace(T, B), "rank_average");
  Carver carve(work);
  RankPlan plan = plan_rank(carve, T, B);
  argsort_rows(x, T, B, false, plan.order, plan.sorted, plan.sort_work, plan.sort_bytes, stream);
  const unsigned grid = grid_for(N, kThreads);
  run_heads_kernel<<<grid, kThreads, 0, stream>>>(plan.sorted, N, B, plan.starts);
  check_launch("rank_average (heads)");
  check(cub::DeviceScan::InclusiveScan(plan.scan_temp, plan.scan_bytes, plan.starts, MaxOp(), N, stream),
        "rank_average (scan)");
  run_average_kernel<<<grid, kThreads, 0, stream>>>(plan.sorted, plan.starts, N, B, plan.avg);
  check_launch("rank_average (averages)");
  scatter_ranks_kernel<<<grid, kThreads, 0, stream>>>(plan.order, plan.starts, plan.avg, N, B, out);
  check_launch("rank_average (scatter)");
}

size_t pearson_workspace(int64_t T, int64_t B) {
  Carver c;
  c.take<double>(T * pearson_chunks(B) * 3);
  c.take<double>(2 * T);
  return c.used();
}

void pearson_rows(const double* x, const double* y, int64_t y_stride, int64_t T, int64_t B, double* out,
                  void* work, size_t work_bytes, cudaStream_t stream) {
  if (T <= 0) return;
  check_workspace(work_bytes, pearson_workspace(T, B), "pearson_rows");
  const int64_t chunks = pearson_chunks(B);
  Carver carve(work);
  double* partial = carve.take<double>(T * chunks * 3);
  double* means = carve.take<double>(2 * T);
  const int64_t blocks = T * chunks;
  if (blocks >= (int64_t(1) << 31)) throw std::runtime_error("fastmlem._cuda: pearson_rows: too many rows");
  pearson_partial_kernel<false><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(x, y, y_stride, B, chunks,
                                                                                      nullptr, partial);
  check_launch("pearson_rows (sums)");
  pearson_means_kernel<<<grid_for(T, kThreads), kThreads, 0, stream>>>(partial, T, B, chunks, means);
  check_launch("pearson_rows (means)");
  pearson_partial_kernel<true><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(x, y, y_stride, B, chunks,
                                                                                     means, partial);
  check_launch("pearson_rows (centred sums)");
  pearson_final_kernel<<<grid_for(T, kThreads), kThreads, 0, stream>>>(partial, T, chunks, out);
  check_launch("pearson_rows (final)");
}

size_t spearman_workspace(int64_t T, int64_t B) {
  Carver c;
  c.take<double>(T * B);
  c.take<double>(T * B);
  c.take_bytes(pearson_workspace(T, B));
  c.take_bytes(rank_workspace(T, B));
  return c.used();
}

void spearman(const double* x, const double* y, int64_t T, int64_t B, double* out, void* work, size_t work_bytes,
              cudaStream_t stream) {
  if (T <= 0) return;
  check_workspace(work_bytes, spearman_workspace(T, B), "spearman");
  Carver carve(work);
  double* rx = carve.take<double>(T * B);
  double* ry = carve.take<double>(T * B);
  void* pw = carve.take_bytes(pearson_workspace(T, B));
  void* rw = carve.take_bytes(rank_workspace(T, B));
  rank_average(x, T, B, rx, rw, rank_workspace(T, B), stream);
  rank_average(y, T, B, ry, rw, rank_workspace(T, B), stream);
  pearson_rows(rx, ry, B, T, B, out, pw, pearson_workspace(T, B), stream);
}

}  // namespace cuda
}  // namespace fastmlem
