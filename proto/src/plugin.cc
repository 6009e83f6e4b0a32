#include "fedge/proto/plugin.h"

#include <dlfcn.h>

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>

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

namespace {

std::mutex& PluginKeysMutex() {
  static std::mutex mu;
  return mu;
}

std::vector<PluginKey>& DeclaredKeys() {
  static auto* keys = new std::vector<PluginKey>();
  return *keys;
}

std::string ShortestText(double value) {
  char buffer[64];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

template <typename V>
PluginKey Declared(std::string name, std::function<PluginKey(std::string, std::string,
                                                            Key<PluginParams>::Get<V>,
                                                            Key<PluginParams>::Set<V>)>
                                         make,
                   std::string help, V default_value, std::function<V(const std::string&)> parse,
                   std::function<std::string(V)> print) {
  const std::string key = name;
  return make(
      std::move(name), std::move(help),
      [key, default_value, parse](const PluginParams& p) {
        auto it = p.find(key);
        return it == p.end() ? default_value : parse(it->second);
      },
      [key, print](PluginParams& p, V v) { p[key] = print(v); });
}

}  // namespace

bool RegisterPluginKeys(std::vector<PluginKey> keys) {
  std::lock_guard<std::mutex> lock(PluginKeysMutex());
  for (PluginKey& key : keys) DeclaredKeys().push_back(std::move(key));
  return true;
}

const KeyTable<PluginParams>& PluginKeys() {
  // Built at first use, after the tool loaded its plug-ins (LoadPluginFlags
  // runs first), and kept: the tables that include it are built once too.
  static const auto* table = [] {
    std::lock_guard<std::mutex> lock(PluginKeysMutex());
    return new KeyTable<PluginParams>("plug-ins", DeclaredKeys());
  }();
  return *table;
}

PluginParams WithPluginDefaults(const PluginParams& set) {
  PluginParams all = set;
  for (const KeyInfo& info : PluginKeys().Describe(set)) all.emplace(info.key, info.value);
  return all;
}

PluginKey PluginDouble(std::string name, std::string help, double default_value) {
  return Declared<double>(
      std::move(name), &PluginKey::Double, std::move(help), default_value,
      [](const std::string& text) { return std::strtod(text.c_str(), nullptr); }, ShortestText);
}

PluginKey PluginInt(std::string name, std::string help, int64_t default_value) {
  return Declared<int64_t>(
      std::move(name), &PluginKey::Int, std::move(help), default_value,
      [](const std::string& text) { return std::strtoll(text.c_str(), nullptr, 10); },
      [](int64_t v) { return std::to_string(v); });
}

PluginKey PluginBool(std::string name, std::string help, bool default_value) {
  return Declared<bool>(
      std::move(name), &PluginKey::Bool, std::move(help), default_value,
      [](const std::string& text) { return text == "true"; },
      [](bool v) { return std::string(v ? "true" : "false"); });
}

PluginKey PluginString(std::string name, std::string help, std::string default_value) {
  return Declared<std::string>(
      std::move(name), &PluginKey::String, std::move(help), std::move(default_value),
      [](const std::string& text) { return text; }, [](std::string v) { return v; });
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
