// Training checkpoints: everything a run needs to continue bit for bit.
//
// A checkpoint holds every tensor of the runtime's ParameterStore
// (parameters and optimizer state, by name), the number of steps done, the
// seed, the position of the counter-based RNG and of the data loader, and
// the run's configuration as key/value text. Files are one protobuf
// (serialize/checkpoint.proto, so at most 2 GiB), written atomically: a
// crash or kill at any moment leaves either the previous file or the new
// complete one under the final name.
//
// In a directory, checkpoints are named ckpt-<step>.sqckpt (the step in 10
// digits, so names sort by step); SaveCheckpointToDir keeps the newest K.
//
// serialize does not depend on the runtime: callers copy ParameterStore
// tensors in and out (tools/train.cc does).
#ifndef SUBQUAD_SERIALIZE_CHECKPOINT_H_
#define SUBQUAD_SERIALIZE_CHECKPOINT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/btree_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/tensor.h"

namespace subquad {

inline constexpr int32_t kCheckpointFormatVersion = 1;

struct Checkpoint {
  int64_t step = 0;           // training steps completed
  uint64_t seed = 0;          // the run's seed
  uint64_t rng_counter = 0;   // the RNG's counter (streams keyed by seed, counter)
  int64_t data_position = 0;  // index of the next batch the data loader draws
  absl::btree_map<std::string, Tensor> tensors;
  absl::btree_map<std::string, std::string> metadata;
};

absl::StatusOr<std::string> EncodeCheckpoint(const Checkpoint& c);
// Validates everything (version, counters, names, tensor types and sizes)
// before it allocates a tensor; InvalidArgument names the field.
absl::StatusOr<Checkpoint> DecodeCheckpoint(absl::string_view bytes);

absl::Status SaveCheckpoint(const Checkpoint& c, const std::string& path);
// Errors start with the path.
absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& path);

// "ckpt-0000001500.sqckpt".
std::string CheckpointFileName(int64_t step);

struct CheckpointFile {
  int64_t step;
  std::string path;
};
// The checkpoints in `dir`, oldest first; other files (temporary files of
// an interrupted save included) are ignored. NotFound when `dir` does not
// exist.
absl::StatusOr<std::vector<CheckpointFile>> ListCheckpoints(
    const std::string& dir);

// Creates `dir` when missing, saves `c` as CheckpointFileName(c.step), then
// removes the oldest checkpoints beyond the newest `keep` (keep <= 0: none
// are removed). Returns the path written.
absl::StatusOr<std::string> SaveCheckpointToDir(const Checkpoint& c,
                                                const std::string& dir,
                                                int keep);

// The newest checkpoint in `dir`; NotFound when there is none.
absl::StatusOr<Checkpoint> LoadLatestCheckpoint(const std::string& dir);

}  // namespace subquad

#endif  // SUBQUAD_SERIALIZE_CHECKPOINT_H_
