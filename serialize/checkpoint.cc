#include "serialize/checkpoint.h"

#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <system_error>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "serialize/checkpoint.pb.h"
#include "serialize/field_budget.h"
#include "serialize/file_io.h"
#include "serialize/printable.h"
#include "serialize/tensor_proto.h"

namespace subquad {
namespace {

constexpr absl::string_view kPrefix = "ckpt-";
constexpr absl::string_view kSuffix = ".sqckpt";

absl::Status Invalid(absl::string_view message) {
  return absl::InvalidArgumentError(absl::StrCat("checkpoint: ", message));
}

// Temporary files of saves that a kill interrupted: ".tmp-ckpt-...sqckpt.
// <pid>.<n>" whose writer is gone. Best effort; a failure changes nothing.
void RemoveOrphanedTempFiles(const std::string& dir) {
  const std::string prefix = absl::StrCat(kTempFilePrefix, kPrefix);
  std::error_code ec;
  for (std::filesystem::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!absl::StartsWith(name, prefix)) continue;
    // The pid is the second-to-last dot-separated field.
    const size_t last = name.rfind('.');
    const size_t before = last == 0 || last == std::string::npos
                              ? std::string::npos
                              : name.rfind('.', last - 1);
    if (before == std::string::npos) continue;
    int pid = 0;
    if (!absl::SimpleAtoi(name.substr(before + 1, last - before - 1), &pid) ||
        pid <= 0) {
      continue;
    }
    if (::kill(pid, 0) != 0 && errno == ESRCH) {
      std::filesystem::remove(it->path(), ec);
      ec.clear();
    }
  }
}

}  // namespace

absl::StatusOr<std::string> EncodeCheckpoint(const Checkpoint& c) {
  proto::CheckpointProto p;
  p.set_format_version(kCheckpointFormatVersion);
  p.set_step(c.step);
  p.set_seed(c.seed);
  p.set_rng_counter(c.rng_counter);
  p.set_data_position(c.data_position);
  for (const auto& [name, t] : c.tensors) {
    proto::NamedTensor* nt = p.add_tensors();
    nt->set_name(name);
    TensorToProto(t.view(), nt->mutable_tensor());
  }
  for (const auto& [k, v] : c.metadata) {
    proto::KeyValue* kv = p.add_metadata();
    kv->set_key(k);
    kv->set_value(v);
  }
  const size_t size = p.ByteSizeLong();
  if (size > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "checkpoint: ", size, " bytes is more than protobuf's 2 GiB limit"));
  }
  std::string out;
  if (!p.SerializeToString(&out)) {
    return absl::InternalError("checkpoint: protobuf could not serialize it");
  }
  return out;
}

absl::StatusOr<Checkpoint> DecodeCheckpoint(absl::string_view bytes) {
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return Invalid(absl::StrCat(bytes.size(),
                                " bytes is more than protobuf's 2 GiB limit"));
  }
  // Tensors are few and large: this is far above any real checkpoint.
  if (absl::Status s = CheckBinaryFieldBudget(
          bytes, proto::CheckpointProto::descriptor(), int64_t{1} << 24);
      !s.ok()) {
    return Invalid(s.message());
  }
  proto::CheckpointProto p;
  if (!p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return Invalid("not a subquad checkpoint: protobuf cannot parse it");
  }
  if (p.format_version() < 1 || p.format_version() > kCheckpointFormatVersion) {
    return Invalid(absl::StrCat("format_version ", p.format_version(),
                                " is not one this subquad reads (1 to ",
                                kCheckpointFormatVersion, ")"));
  }
  if (p.step() < 0) return Invalid(absl::StrCat("step ", p.step(), " is negative"));
  if (p.data_position() < 0) {
    return Invalid(absl::StrCat("data_position ", p.data_position(), " is negative"));
  }
  Checkpoint c;
  c.step = p.step();
  c.seed = p.seed();
  c.rng_counter = p.rng_counter();
  c.data_position = p.data_position();
  for (int i = 0; i < p.tensors_size(); ++i) {
    const proto::NamedTensor& nt = p.tensors(i);
    if (nt.name().empty()) return Invalid(absl::StrCat("tensors[", i, "]: empty name"));
    const std::string field = absl::StrCat("tensor '", Printable(nt.name()), "'");
    if (c.tensors.contains(nt.name())) return Invalid(absl::StrCat(field, ": listed twice"));
    absl::StatusOr<Tensor> t = TensorFromProto(nt.tensor());
    if (!t.ok()) return Invalid(absl::StrCat(field, ": ", t.status().message()));
    c.tensors.emplace(nt.name(), *std::move(t));
  }
  for (int i = 0; i < p.metadata_size(); ++i) {
    const proto::KeyValue& kv = p.metadata(i);
    if (!c.metadata.emplace(kv.key(), kv.value()).second) {
      return Invalid(absl::StrCat("metadata '", Printable(kv.key()),
                                  "': listed twice"));
    }
  }
  return c;
}

absl::Status SaveCheckpoint(const Checkpoint& c, const std::string& path) {
  absl::StatusOr<std::string> bytes = EncodeCheckpoint(c);
  if (!bytes.ok()) {
    return absl::Status(bytes.status().code(),
                        absl::StrCat(path, ": ", bytes.status().message()));
  }
  return WriteFileAtomically(path, *bytes);
}

absl::StatusOr<Checkpoint> LoadCheckpoint(const std::string& path) {
  ASSIGN_OR_RETURN(std::string bytes,
                   ReadFileToString(path, std::numeric_limits<int>::max()));
  absl::StatusOr<Checkpoint> c = DecodeCheckpoint(bytes);
  if (!c.ok()) {
    return absl::Status(c.status().code(),
                        absl::StrCat(path, ": ", c.status().message()));
  }
  return c;
}

std::string CheckpointFileName(int64_t step) {
  return absl::StrFormat("%s%010d%s", kPrefix, step, kSuffix);
}

absl::StatusOr<std::vector<CheckpointFile>> ListCheckpoints(
    const std::string& dir) {
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) {
    const std::string message =
        absl::StrCat("cannot list '", dir, "': ", ec.message());
    if (ec == std::errc::no_such_file_or_directory) {
      return absl::NotFoundError(message);
    }
    return absl::UnavailableError(message);
  }
  std::vector<CheckpointFile> out;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!absl::StartsWith(name, kPrefix) || !absl::EndsWith(name, kSuffix)) {
      continue;
    }
    const absl::string_view digits = absl::string_view(name).substr(
        kPrefix.size(), name.size() - kPrefix.size() - kSuffix.size());
    int64_t step;
    if (digits.empty() || !absl::c_all_of(digits, absl::ascii_isdigit) ||
        !absl::SimpleAtoi(digits, &step)) {
      continue;
    }
    out.push_back({step, absl::StrCat(dir, "/", name)});
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot list '", dir, "': ", ec.message()));
  }
  std::sort(out.begin(), out.end(),
            [](const CheckpointFile& a, const CheckpointFile& b) {
              return a.step < b.step;
            });
  return out;
}

absl::StatusOr<std::string> SaveCheckpointToDir(const Checkpoint& c,
                                                const std::string& dir,
                                                int keep) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create directory '", dir, "': ", ec.message()));
  }
  const std::string path = absl::StrCat(dir, "/", CheckpointFileName(c.step));
  RETURN_IF_ERROR(SaveCheckpoint(c, path));
  RemoveOrphanedTempFiles(dir);
  if (keep > 0) {
    ASSIGN_OR_RETURN(std::vector<CheckpointFile> files, ListCheckpoints(dir));
    for (size_t i = 0; i + keep < files.size(); ++i) {
      if (std::remove(files[i].path.c_str()) != 0 && errno != ENOENT) {
        return absl::UnavailableError(absl::StrCat(
            "cannot remove old checkpoint '", files[i].path, "': ",
            std::strerror(errno)));
      }
    }
  }
  return path;
}

absl::StatusOr<Checkpoint> LoadLatestCheckpoint(const std::string& dir) {
  ASSIGN_OR_RETURN(std::vector<CheckpointFile> files, ListCheckpoints(dir));
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat("no checkpoint (", kPrefix, "*",
                                            kSuffix, ") in '", dir, "'"));
  }
  return LoadCheckpoint(files.back().path);
}

}  // namespace subquad
