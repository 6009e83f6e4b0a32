// Plug-ins: shared libraries whose registration lines add mechanisms,
// clippers, accountants, strategies, codecs or model architectures to the
// registries (see examples/custom_mechanism). Every tool loads them with
// --plugin LIB before it reads any config, so what they register is a valid
// config value and appears in --help.
#ifndef FEDGE_PROTO_PLUGIN_H_
#define FEDGE_PROTO_PLUGIN_H_

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace fedge::config {

// Loads `path` (dlopen, symbols resolved now and made global, so a plug-in
// may depend on another). INVALID_ARGUMENT naming the file and the loader's
// reason when it cannot be loaded; nothing is registered then.
absl::Status LoadPlugin(const std::string& path);

// Loads every "--plugin LIB" (or "--plugin=LIB") of a command line, in order,
// and removes them from `args`, before the tool reads anything else (its
// --help included). The first failure is returned, `args` unchanged.
absl::Status LoadPluginFlags(std::vector<std::string>& args);

}  // namespace fedge::config

#endif  // FEDGE_PROTO_PLUGIN_H_
