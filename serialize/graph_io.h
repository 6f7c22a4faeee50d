// Graph files: binary protobuf (.sqg) and protobuf text (.sqtxt).
//
//   RETURN_IF_ERROR(SaveGraph(graph, "model.sqg"));
//   ASSIGN_OR_RETURN(Graph g, LoadGraph("model.sqtxt"));
//
// The format comes from the file name's extension unless given. Saves are
// atomic (serialize/file_io.h). Loads read at most LoadLimits::max_bytes and
// validate the contents fully before building a graph (graph_proto.h);
// errors start with the path.
#ifndef SUBQUAD_SERIALIZE_GRAPH_IO_H_
#define SUBQUAD_SERIALIZE_GRAPH_IO_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "core/graph.h"
#include "serialize/graph_proto.h"

namespace subquad {

enum class GraphFormat { kBinary, kText };

// "binary" / "text".
absl::string_view GraphFormatName(GraphFormat f);
// kBinary for ".sqg", kText for ".sqtxt"; InvalidArgument otherwise.
absl::StatusOr<GraphFormat> GraphFormatFromPath(absl::string_view path);

absl::StatusOr<std::string> SerializeGraph(const Graph& graph,
                                           GraphFormat format);
// InvalidArgument for bytes that do not parse or do not validate; the text
// parser's message gives the line and column.
absl::StatusOr<Graph> ParseGraph(absl::string_view bytes, GraphFormat format,
                                 const LoadLimits& limits = {});

absl::Status SaveGraph(const Graph& graph, const std::string& path,
                       std::optional<GraphFormat> format = std::nullopt);
absl::StatusOr<Graph> LoadGraph(const std::string& path,
                                std::optional<GraphFormat> format = std::nullopt,
                                const LoadLimits& limits = {});

}  // namespace subquad

#endif  // SUBQUAD_SERIALIZE_GRAPH_IO_H_
