// Soft ranks (Blondel et al. 2020) for one very long row or a batch of rows: CUB radix argsort,
// then a PARALLEL Pool-Adjacent-Violators, then a segmented-mean backward.
//
// Parallel PAV. Isotonic regression has a unique solution and PAV reaches it whatever order the
// adjacent violators are pooled in, so the solution of a range is found by solving its two halves
// and then merging them: both halves are already monotone, so the only violation is at the seam,
// and the merge pools blocks on both sides of it until none is left (work = blocks pooled). The
// halves double at each level: levels up to 512 run inside one thread block (kernel pav_tile,
// barriers between levels), larger levels are one launch each (log2(B / 512) launches), every
// merge of a level in parallel. A block [s, e) keeps its sufficient statistics at s, its end at
// s (end_of) and its start at e - 1 (start_of); blk[k] holds the flat index of k while k starts a
// block and 0 once k is pooled, so a max-scan gives every position the start of its final block.
#include <cub/device/device_scan.cuh>

#include <cmath>

#include "common.cuh"
#include "kernels.hpp"

namespace fastmlem {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kTile = 2 * kThreads;  // positions solved by one thread block in pav_tile

struct Pav {
  double* s1;         // l2: sum of (s - rho); kl: logsumexp(s)
  double* s2;         // l2: count;            kl: logsumexp(log rho)
  int32_t* end_of;    // at a block's start: its end (exclusive), row-local
  int32_t* start_of;  // at a block's last position: its start, row-local
  int64_t* blk;       // flat index while the position starts a block, else 0
  bool kl;
};

__device__ __forceinline__ double logaddexp(double a, double b) {
  const double mx = fmax(a, b);
  return mx + log(exp(a - mx) + exp(b - mx));
}

__device__ __forceinline__ double block_value(bool kl, double a, double b) { return kl ? a - b : a / b; }
__device__ __forceinline__ double combine(bool kl, double a, double b) { return kl ? logaddexp(a, b) : a + b; }

// Merges the solved ranges [lo, p) and [p, hi) of the row starting at flat index `base`.
__device__ void merge_at(const Pav& P, int64_t base, int64_t lo, int64_t p, int64_t hi) {
  const int64_t sa = P.start_of[base + p - 1];
  double c1 = P.s1[base + sa], c2 = P.s2[base + sa];
  const double b1 = P.s1[base + p], b2 = P.s2[base + p];
  if (!(block_value(P.kl, c1, c2) <= block_value(P.kl, b1, b2))) return;  // no violation at the seam
  int64_t sc = sa, ec = P.end_of[base + p];
  c1 = combine(P.kl, c1, b1);
  c2 = combine(P.kl, c2, b2);
  P.blk[base + p] = 0;
  for (;;) {  // the pooled block is the only one that can violate; pool with a neighbour while it does
    const double vc = block_value(P.kl, c1, c2);
    if (sc > lo) {
      const int64_t sl = P.start_of[base + sc - 1];
      const double l1 = P.s1[base + sl], l2 = P.s2[base + sl];
      if (block_value(P.kl, l1, l2) <= vc) {
        c1 = combine(P.kl, l1, c1);
        c2 = combine(P.kl, l2, c2);
        P.blk[base + sc] = 0;
        sc = sl;
        continue;
      }
    }
    if (ec < hi) {
      const double r1 = P.s1[base + ec], r2 = P.s2[base + ec];
      if (vc <= block_value(P.kl, r1, r2)) {
        const int64_t er = P.end_of[base + ec];
        c1 = combine(P.kl, c1, r1);
        c2 = combine(P.kl, c2, r2);
        P.blk[base + ec] = 0;
        ec = er;
        continue;
      }
    }
    break;
  }
  P.s1[base + sc] = c1;
  P.s2[base + sc] = c2;
  P.end_of[base + sc] = static_cast<int32_t>(ec);
  P.start_of[base + ec - 1] = static_cast<int32_t>(sc);
}

// One block per (row, tile of kTile sorted positions): singletons, then levels 1 .. kTile / 2.
__global__ void pav_tile_kernel(const double* x, const double* eps, const int32_t* perm, int64_t B, int64_t tiles,
                                Pav P) {
  const int64_t t = blockIdx.x / tiles, lo0 = (blockIdx.x % tiles) * kTile, base = t * B;
  const int64_t hi0 = lo0 + kTile < B ? lo0 + kTile : B;
  const double e = eps[t];
  for (int64_t k = lo0 + threadIdx.x; k < hi0; k += blockDim.x) {
    const double s = x[base + perm[base + k]] / e, rho = static_cast<double>(B - k);
    P.s1[base + k] = P.kl ? s : s - rho;
    P.s2[base + k] = P.kl ? log(rho) : 1.0;
    P.end_of[base + k] = static_cast<int32_t>(k + 1);
    P.start_of[base + k] = static_cast<int32_t>(k);
    P.blk[base + k] = base + k;
  }
  __syncthreads();
  for (int64_t half = 1; half < kTile; half *= 2) {
    const int64_t lo = lo0 + threadIdx.x * 2 * half;
    if (threadIdx.x * 2 * half < kTile && lo + half < hi0)
      merge_at(P, base, lo, lo + half, lo + 2 * half < hi0 ? lo + 2 * half : hi0);
    __syncthreads();
  }
}

// One thread per merge of a level with halves of `half` positions (half >= kTile).
__global__ void pav_level_kernel(int64_t T, int64_t B, int64_t half, Pav P) {
  const int64_t per_row = (B + 2 * half - 1) / (2 * half);
  for (int64_t g = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; g < T * per_row;
       g += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = g / per_row, lo = (g % per_row) * 2 * half, p = lo + half;
    if (p < B) merge_at(P, t * B, lo, p, lo + 2 * half < B ? lo + 2 * half : B);
  }
}

struct MaxOp {
  __device__ __forceinline__ int64_t operator()(int64_t a, int64_t b) const { return a > b ? a : b; }
};

struct Add2 {
  __device__ __forceinline__ double2 operator()(const double2& a, const double2& b) const {
    return make_double2(a.x + b.x, a.y + b.y);
  }
};

// primal = s - block value (l2), exp(s - block value) (kl), written at the original positions.
__global__ void pav_finish_kernel(const double* x, const double* eps, const int32_t* perm, int64_t N, int64_t B,
                                  Pav P, double* ranks) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < N;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = k / B, base = t * B, st = P.blk[k], at = base + perm[k];
    const double primal = x[at] / eps[t] - block_value(P.kl, P.s1[st], P.s2[st]);
    ranks[at] = P.kl ? exp(primal) : primal;
  }
}

// Per sorted position: (u, e) with u = g (l2) or g * rank (kl), e = 1 (l2; its block sum is the
// block length) or exp(s - s_start) (kl; s is largest at the block start, as sorted descending).
__global__ void vjp_terms_kernel(const double* g, const double* x, const double* ranks, const int32_t* perm,
                                 const int64_t* blk, const double* eps, int64_t N, int64_t B, bool kl,
                                 double2* terms) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < N;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = k / B, base = t * B, at = base + perm[k];
    double u = g[at], e = 1.0;
    if (kl) {
      u *= ranks[at];
      e = exp(x[at] / eps[t] - x[base + perm[blk[k]]] / eps[t]);
    }
    terms[k] = make_double2(u, e);
  }
}

// The inclusive by-block scan holds each block's totals at its last position: move them to the
// block's start (only the last position of a block reads, only its start is written: no race).
__global__ void vjp_totals_kernel(const int64_t* blk, int64_t N, int64_t B, double2* sums) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < N;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x)
    if (k % B == B - 1 || blk[k + 1] != blk[k]) sums[blk[k]] = sums[k];
}

__global__ void vjp_out_kernel(const double2* terms, const double2* sums, const int32_t* perm, const int64_t* blk,
                               const double* eps, int64_t N, int64_t B, double* out) {
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < N;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = k / B;
    const double2 term = terms[k], tot = sums[blk[k]];
    out[t * B + perm[k]] = (term.x - term.y / tot.y * tot.x) / eps[t];
  }
}

struct ForwardPlan {
  uint64_t* sorted;
  double *s1, *s2;
  int32_t *end_of, *start_of;
  void* sort_work;
  size_t sort_bytes;
  void* scan_temp;
  size_t scan_bytes = 0;
};

ForwardPlan plan_forward(Carver& carve, int64_t T, int64_t B) {
  const int64_t N = T * B;
  ForwardPlan plan;
  plan.sorted = carve.take<uint64_t>(N);
  plan.s1 = carve.take<double>(N);
  plan.s2 = carve.take<double>(N);
  plan.end_of = carve.take<int32_t>(N);
  plan.start_of = carve.take<int32_t>(N);
  plan.sort_bytes = argsort_workspace(T, B);
  plan.sort_work = carve.take_bytes(plan.sort_bytes);
  check(cub::DeviceScan::InclusiveScan(nullptr, plan.scan_bytes, static_cast<int64_t*>(nullptr), MaxOp(), N),
        "soft_rank (size query)");
  plan.scan_temp = carve.take_bytes(plan.scan_bytes);
  return plan;
}

struct BackwardPlan {
  double2 *terms, *sums;
  void* scan_temp;
  size_t scan_bytes = 0;
};

BackwardPlan plan_backward(Carver& carve, int64_t T, int64_t B) {
  const int64_t N = T * B;
  BackwardPlan plan;
  plan.terms = carve.take<double2>(N);
  plan.sums = carve.take<double2>(N);
  check(cub::DeviceScan::InclusiveScanByKey(nullptr, plan.scan_bytes, static_cast<const int64_t*>(nullptr),
                                            static_cast<const double2*>(nullptr), static_cast<double2*>(nullptr),
                                            Add2(), N),
        "soft_rank_vjp (size query)");
  plan.scan_temp = carve.take_bytes(plan.scan_bytes);
  return plan;
}

}  // namespace

size_t soft_rank_workspace(int64_t T, int64_t B) {
  Carver c;
  plan_forward(c, T, B);
  return c.used();
}

void soft_rank(const double* x, const double* eps, int64_t T, int64_t B, bool kl, double* ranks, int32_t* perm,
               int64_t* block, void* work, size_t work_bytes, cudaStream_t stream) {
  const int64_t N = T * B;
  if (N <= 0) return;
  if (B >= (int64_t(1) << 31)) throw std::runtime_error("fastmlem._cuda: rows must be shorter than 2^31");
  check_workspace(work_bytes, soft_rank_workspace(T, B), "soft_rank");
  Carver carve(work);
  ForwardPlan plan = plan_forward(carve, T, B);
  argsort_rows(x, T, B, true, perm, plan.sorted, plan.sort_work, plan.sort_bytes, stream);
  const Pav P{plan.s1, plan.s2, plan.end_of, plan.start_of, block, kl};
  const int64_t tiles = (B + kTile - 1) / kTile;
  if (T * tiles >= (int64_t(1) << 31)) throw std::runtime_error("fastmlem._cuda: soft_rank: too many rows");
  pav_tile_kernel<<<static_cast<unsigned>(T * tiles), kThreads, 0, stream>>>(x, eps, perm, B, tiles, P);
  check_launch("soft_rank (tiles)");
  for (int64_t half = kTile; half < B; half *= 2) {
    const int64_t merges = T * ((B + 2 * half - 1) / (2 * half));
    pav_level_kernel<<<grid_for(merges, kThreads), kThreads, 0, stream>>>(T, B, half, P);
    check_launch("soft_rank (merge level)");
  }
  check(cub::DeviceScan::InclusiveScan(plan.scan_temp, plan.scan_bytes, block, MaxOp(), N, stream),
        "soft_rank (block starts)");
  pav_finish_kernel<<<grid_for(N, kThreads), kThreads, 0, stream>>>(x, eps, perm, N, B, P, ranks);
  check_launch("soft_rank (finish)");
}

size_t soft_rank_vjp_workspace(int64_t T, int64_t B) {
  Carver c;
  plan_backward(c, T, B);
  return c.used();
}

void soft_rank_vjp(const double* g, const double* x, const double* ranks, const int32_t* perm, const int64_t* block,
                   const double* eps, int64_t T, int64_t B, bool kl, double* out, void* work, size_t work_bytes,
                   cudaStream_t stream) {
  const int64_t N = T * B;
  if (N <= 0) return;
  check_workspace(work_bytes, soft_rank_vjp_workspace(T, B), "soft_rank_vjp");
  Carver carve(work);
  BackwardPlan plan = plan_backward(carve, T, B);
  const unsigned grid = grid_for(N, kThreads);
  vjp_terms_kernel<<<grid, kThreads, 0, stream>>>(g, x, ranks, perm, block, eps, N, B, kl, plan.terms);
  check_launch("soft_rank_vjp (terms)");
  check(cub::DeviceScan::InclusiveScanByKey(plan.scan_temp, plan.scan_bytes, block, plan.terms, plan.sums, Add2(), N,
                                            ::cuda::std::equal_to<>(), stream),
        "soft_rank_vjp (block sums)");
  vjp_totals_kernel<<<grid, kThreads, 0, stream>>>(block, N, B, plan.sums);
  check_launch("soft_rank_vjp (totals)");
  vjp_out_kernel<<<grid, kThreads, 0, stream>>>(plan.terms, plan.sums, perm, block, eps, N, B, out);
  check_launch("soft_rank_vjp (out)");
}

}  // namespace cuda
}  // namespace fastmlem
