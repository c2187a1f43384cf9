// MLEM's training step fused into one call: sample pairs, predictor rows, neural distances (from a
// condensed RDM or gathered from the rows of Y), running min-max + square, prediction, soft ranks, Pearson and its gradient.
// The same objective as fastmlem.ops.rank_loss_grad (tested equal), without per-step Python.
// Threads: one parallel region per step (batches of 4,096 pairs and more) in which one thread ranks
// the predictions while all take chunks of pairs' neural distances; the last to finish ranks them.
#pragma once
#include <cstdint>
#include <vector>

#include "kernels.hpp"

namespace fastmlem {

class MlemStep {
 public:
  // X (n, m) encoded features, or (n, n, m) per-feature distances when precomputed; targets: the
  // condensed RDM or the rows of Y; both kept by reference (caller owns).
  // strength > 0: fixed soft-rank strength; strength <= 0: 'auto' (auto_strength per vector).
  MlemStep(const double* X, const NeuralSource& targets, int64_t n, int64_t m, bool precomputed, bool interactions,
           double nan_to_num, int64_t batch, uint64_t seed, double strength, bool kl);
  // One step on stream `stream` with column weights w (q). Updates the running lo/hi of the raw
  // neural distances; writes grad_w (q); returns the score pearson(softrank(F w), softrank(y)).
  double step(uint64_t stream, const double* w, double* lo, double* hi, double* grad_w);
  int64_t columns() const { return q_; }
  MlemStep(const MlemStep&) = delete;  // targets_ may point into norms_
  MlemStep& operator=(const MlemStep&) = delete;

 private:
  const double* X_;
  NeuralSource targets_;
  int64_t n_, m_, q_, B_;
  bool precomputed_, interactions_, kl_;
  double nan_to_num_, strength_;
  uint64_t seed_;
  std::vector<int64_t> i_, j_, perm_, block_, perm_y_, block_y_, visit_i_, visit_j_;
  std::vector<double> norms_, visit_y_, F_, y_, pred_, rank_x_, rank_y_, g_, gx_;
};

}  // namespace fastmlem
