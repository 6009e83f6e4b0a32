#include "fedge/proto/plugin.h"

#include <dlfcn.h>

#include <filesystem>

namespace fedge::config {

absl::Status LoadPlugin(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("--plugin needs a shared library");
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return absl::InvalidArgumentError("--plugin " + path + ": no such file");
  }
  // dlopen without a slash searches the library path, not the working folder.
  const std::string name = path.find('/') == std::string::npos ? "./" + path : path;
  if (dlopen(name.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    const char* why = dlerror();
    return absl::InvalidArgumentError("--plugin " + path + ": " +
                                      (why != nullptr ? why : "cannot be loaded"));
  }
  return absl::OkStatus();
}

absl::Status LoadPluginFlags(std::vector<std::string>& args) {
  std::vector<std::string> rest;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string library;
    if (args[i] == "--plugin") {
      if (i + 1 >= args.size()) return absl::InvalidArgumentError("--plugin needs a shared library");
      library = args[++i];
    } else if (args[i].starts_with("--plugin=")) {
      library = args[i].substr(9);
    } else {
      rest.push_back(args[i]);
      continue;
    }
    if (absl::Status s = LoadPlugin(library); !s.ok()) return s;
  }
  args = std::move(rest);
  return absl::OkStatus();
}

}  // namespace fedge::config
