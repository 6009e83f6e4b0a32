// Plug-ins: shared libraries whose registration lines add mechanisms,
// clippers, accountants, strategies, codecs or model architectures to the
// registries (see examples/custom_mechanism). Every tool loads them with
// --plugin LIB before it reads any config, so what they register is a valid
// config value and appears in --help.
#ifndef FEDGE_PROTO_PLUGIN_H_
#define FEDGE_PROTO_PLUGIN_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "fedge/proto/key_table.h"

namespace fedge::config {

// Loads `path` (dlopen, symbols resolved now and made global, so a plug-in
// may depend on another). INVALID_ARGUMENT naming the file and the loader's
// reason when it cannot be loaded; nothing is registered then.
absl::Status LoadPlugin(const std::string& path);

// Loads every "--plugin LIB" (or "--plugin=LIB") of a command line, in order,
// and removes them from `args`, before the tool reads anything else (its
// --help included). The first failure is returned, `args` unchanged.
absl::Status LoadPluginFlags(std::vector<std::string>& args);

// A plug-in's own config keys. A plug-in declares them once, with types,
// ranges, defaults and help (RegisterPluginKeys, next to its registration
// line); every tool's key table includes them, so they appear in --help
// once the plug-in is loaded and are validated like built-in keys. Name them
// after the component: "privacy.<mechanism>.<key>". Their values reach the
// component as text, defaults filled in (privacy::MechanismOptions::params),
// so a default is written once, in the declaration.
using PluginParams = std::map<std::string, std::string>;
using PluginKey = Key<PluginParams>;

// Returns true so it can initialize a static. A name declared twice, or by a
// built-in table, is refused when the tables are built (a programmer error).
bool RegisterPluginKeys(std::vector<PluginKey> keys);
// Every declared plug-in key, as one group to Include in a tool's table.
const KeyTable<PluginParams>& PluginKeys();
// `set` with every declared key that is not in it at its default.
PluginParams WithPluginDefaults(const PluginParams& set);

// Declarations for the common kinds: the value is kept as text in the map;
// the getter gives the default while a key is unset.
PluginKey PluginDouble(std::string name, std::string help, double default_value);
PluginKey PluginInt(std::string name, std::string help, int64_t default_value);
PluginKey PluginBool(std::string name, std::string help, bool default_value);
PluginKey PluginString(std::string name, std::string help, std::string default_value);

}  // namespace fedge::config

#endif  // FEDGE_PROTO_PLUGIN_H_
