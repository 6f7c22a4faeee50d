#include "serialize/graph_io.h"

#include <limits>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "serialize/field_budget.h"
#include "serialize/file_io.h"

namespace subquad {
namespace {

// Keeps the text parser's first error (line and column are 0-based there).
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, int column, const std::string& message) override {
    if (error_.empty()) {
      error_ = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ",
                            message);
    }
  }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

absl::Status WithPath(const std::string& path, const absl::Status& s) {
  return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
}

}  // namespace

absl::string_view GraphFormatName(GraphFormat f) {
  return f == GraphFormat::kBinary ? "binary" : "text";
}

absl::StatusOr<GraphFormat> GraphFormatFromPath(absl::string_view path) {
  if (absl::EndsWith(path, ".sqg")) return GraphFormat::kBinary;
  if (absl::EndsWith(path, ".sqtxt")) return GraphFormat::kText;
  return absl::InvalidArgumentError(absl::StrCat(
      "cannot tell the format of '", path,
      "' from its name: use .sqg for binary or .sqtxt for text graphs"));
}

absl::StatusOr<std::string> SerializeGraph(const Graph& graph,
                                           GraphFormat format) {
  ASSIGN_OR_RETURN(proto::GraphProto p, GraphToProto(graph));
  std::string out;
  if (format == GraphFormat::kBinary) {
    if (!p.SerializeToString(&out)) {
      return absl::InternalError(absl::StrCat(
          "protobuf could not serialize the graph (", p.ByteSizeLong(),
          " bytes; the protobuf limit is 2 GiB)"));
    }
    return out;
  }
  out = absl::StrCat("# subquad graph, text format version ",
                     p.producer_version(), " (serialize/graph.proto)\n");
  std::string body;
  if (!google::protobuf::TextFormat::PrintToString(p, &body)) {
    return absl::InternalError("protobuf could not print the graph as text");
  }
  out += body;
  return out;
}

absl::StatusOr<Graph> ParseGraph(absl::string_view bytes, GraphFormat format,
                                 const LoadLimits& limits) {
  // Protobuf reads at most 2 GiB from one buffer.
  if (static_cast<int64_t>(bytes.size()) > limits.max_bytes ||
      bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "graph is ", bytes.size(), " bytes; the limit is ", limits.max_bytes));
  }
  RETURN_IF_ERROR(format == GraphFormat::kBinary
                      ? CheckBinaryFieldBudget(bytes, proto::GraphProto::descriptor(),
                                               limits.max_fields)
                      : CheckTextFieldBudget(bytes, limits.max_fields));
  proto::GraphProto p;
  if (format == GraphFormat::kBinary) {
    if (!p.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return absl::InvalidArgumentError(
          "not a binary subquad graph: protobuf cannot parse it as a "
          "GraphProto");
    }
  } else {
    google::protobuf::TextFormat::Parser parser;
    FirstError errors;
    parser.RecordErrorsTo(&errors);
    google::protobuf::io::ArrayInputStream in(bytes.data(),
                                              static_cast<int>(bytes.size()));
    if (!parser.Parse(&in, &p)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "not a text subquad graph: ",
          errors.error().empty() ? "protobuf cannot parse it" : errors.error()));
    }
  }
  return GraphFromProto(p, limits);
}

absl::Status SaveGraph(const Graph& graph, const std::string& path,
                       std::optional<GraphFormat> format) {
  if (!format.has_value()) {
    ASSIGN_OR_RETURN(format, GraphFormatFromPath(path));
  }
  absl::StatusOr<std::string> bytes = SerializeGraph(graph, *format);
  if (!bytes.ok()) return WithPath(path, bytes.status());
  return WriteFileAtomically(path, *bytes);
}

absl::StatusOr<Graph> LoadGraph(const std::string& path,
                                std::optional<GraphFormat> format,
                                const LoadLimits& limits) {
  if (!format.has_value()) {
    ASSIGN_OR_RETURN(format, GraphFormatFromPath(path));
  }
  ASSIGN_OR_RETURN(std::string bytes, ReadFileToString(path, limits.max_bytes));
  absl::StatusOr<Graph> g = ParseGraph(bytes, *format, limits);
  if (!g.ok()) return WithPath(path, g.status());
  return g;
}

}  // namespace subquad
