#include "fedge/proto/key_table.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace fedge::config {
namespace {

absl::Status Refuse(const std::string& key, const std::string& text, const std::string& want) {
  return absl::InvalidArgumentError(
      absl::StrCat("config key '", key, "': expected ", want, ", got '", text, "'"));
}

std::string FormatNumber(double v) { return absl::StrCat(v); }

const char* UnitName(DurationUnit unit) {
  return unit == DurationUnit::kSeconds ? "seconds" : "milliseconds";
}

double InUnit(std::chrono::milliseconds ms, DurationUnit unit) {
  return unit == DurationUnit::kSeconds ? static_cast<double>(ms.count()) / 1000.0
                                        : static_cast<double>(ms.count());
}

bool InRange(const ValueRule& rule, double v) {
  return std::isfinite(v) && (rule.min_open ? v > rule.min : v >= rule.min) &&
         (rule.max_open ? v < rule.max : v <= rule.max);
}

std::string NumberRange(const ValueRule& rule, const std::string& noun) {
  const bool has_min = !std::isinf(rule.min);
  const bool has_max = !std::isinf(rule.max);
  if (has_min && has_max) {
    return absl::StrCat(noun, " in ", rule.min_open ? "(" : "[", FormatNumber(rule.min), ", ",
                        FormatNumber(rule.max), rule.max_open ? ")" : "]");
  }
  if (has_min) {
    return absl::StrCat(noun, rule.min_open ? " > " : " >= ", FormatNumber(rule.min));
  }
  if (has_max) {
    return absl::StrCat(noun, rule.max_open ? " < " : " <= ", FormatNumber(rule.max));
  }
  return noun;
}

// A duration's number of milliseconds from "1.5" (in `unit`) or a suffixed
// "500ms", "2s", "5m", "1h"; the number is returned in `unit` too.
bool ParseDuration(absl::string_view text, DurationUnit unit, double* in_unit,
                   std::chrono::milliseconds* out) {
  double factor_ms = unit == DurationUnit::kSeconds ? 1000.0 : 1.0;
  struct Suffix {
    const char* text;
    double ms;
  };
  for (const Suffix& s :
       {Suffix{"ms", 1.0}, Suffix{"s", 1000.0}, Suffix{"m", 60'000.0}, Suffix{"h", 3'600'000.0}}) {
    if (absl::ConsumeSuffix(&text, s.text)) {
      factor_ms = s.ms;
      break;
    }
  }
  double number = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(text), &number) || !std::isfinite(number)) {
    return false;
  }
  const double ms = number * factor_ms;
  if (!(std::fabs(ms) < 9e18)) return false;
  *out = std::chrono::milliseconds(std::llround(ms));
  *in_unit = unit == DurationUnit::kSeconds ? ms / 1000.0 : ms;
  return true;
}

bool ValidHostPort(const std::string& v) {
  const size_t colon = v.rfind(':');
  int port = 0;
  return colon != std::string::npos && colon != 0 && absl::SimpleAtoi(v.substr(colon + 1), &port) &&
         port >= 0 && port <= 65535;
}

std::vector<std::string> SplitList(const RawValue& raw) {
  std::vector<std::string> items;
  if (raw.items) {
    for (const std::string& item : *raw.items) {
      std::string s(absl::StripAsciiWhitespace(item));
      if (!s.empty()) items.push_back(std::move(s));
    }
    return items;
  }
  for (absl::string_view part : absl::StrSplit(raw.text, ',', absl::SkipWhitespace())) {
    items.emplace_back(absl::StripAsciiWhitespace(part));
  }
  return items;
}

size_t EditDistance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t next =
          std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1] ? 1 : 0)});
      diagonal = row[j];
      row[j] = next;
    }
  }
  return row[b.size()];
}

std::string Leaf(const std::string& key) {
  const size_t dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

absl::Status Flatten(const YAML::Node& node, const std::string& prefix,
                     std::vector<KeyTableBase::Entry>& out) {
  if (node.IsMap()) {
    for (const auto& item : node) {
      if (!item.first.IsScalar()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config key under '", prefix, "' is not a plain name"));
      }
      const std::string name = item.first.Scalar();
      const std::string key = prefix.empty() ? name : absl::StrCat(prefix, ".", name);
      if (absl::Status s = Flatten(item.second, key, out); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  if (node.IsScalar()) {
    out.push_back({prefix, RawValue{node.Scalar(), std::nullopt}});
    return absl::OkStatus();
  }
  if (node.IsSequence()) {
    std::vector<std::string> items;
    for (const auto& item : node) {
      if (!item.IsScalar()) {
        return absl::InvalidArgumentError(
            absl::StrCat("config key '", prefix, "' must be a list of single values"));
      }
      items.push_back(item.Scalar());
    }
    out.push_back({prefix, RawValue{absl::StrJoin(items, ","), std::move(items)}});
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat("config key '", prefix, "' has no value"));
}

}  // namespace

absl::StatusOr<Value> ParseValue(const KeySpec& spec, const std::string& written,
                                 const RawValue& raw) {
  const ValueRule& rule = spec.rule;
  if (raw.items && rule.kind != ValueKind::kList) {
    return absl::InvalidArgumentError(
        absl::StrCat("config key '", written, "' must be a single value, not a list"));
  }
  const std::string& text = raw.text;
  const std::string stripped(absl::StripAsciiWhitespace(text));
  Value value;
  switch (rule.kind) {
    case ValueKind::kInt: {
      int64_t v = 0;
      if (!absl::SimpleAtoi(stripped, &v) || v < rule.int_min || v > rule.int_max) {
        return Refuse(written, text, Expectation(rule));
      }
      value = v;
      break;
    }
    case ValueKind::kDouble: {
      double v = 0;
      if (!absl::SimpleAtod(stripped, &v) || !InRange(rule, v)) {
        return Refuse(written, text, Expectation(rule));
      }
      value = v;
      break;
    }
    case ValueKind::kBool: {
      const std::string v = absl::AsciiStrToLower(stripped);
      if (v == "true" || v == "on" || v == "yes" || v == "1") {
        value = true;
      } else if (v == "false" || v == "off" || v == "no" || v == "0") {
        value = false;
      } else {
        return Refuse(written, text, Expectation(rule));
      }
      break;
    }
    case ValueKind::kString:
      if (rule.non_empty && text.empty()) return Refuse(written, text, Expectation(rule));
      value = text;
      break;
    case ValueKind::kEnum: {
      const std::vector<std::string> known =
          rule.choices ? rule.choices() : std::vector<std::string>{};
      if (std::find(known.begin(), known.end(), stripped) == known.end()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "config key '", written, "': unknown value '", stripped, "'; known: ",
            absl::StrJoin(known, ", "),
            rule.pluggable ? " (a plug-in's are known once its library is loaded: --plugin LIB)"
                           : ""));
      }
      value = stripped;
      break;
    }
    case ValueKind::kDuration: {
      double in_unit = 0;
      std::chrono::milliseconds ms{0};
      if (!ParseDuration(stripped, rule.unit, &in_unit, &ms) || !InRange(rule, in_unit)) {
        return Refuse(written, text, Expectation(rule));
      }
      value = ms;
      break;
    }
    case ValueKind::kHostPort:
      if (!(stripped.empty() ? rule.allow_empty : ValidHostPort(stripped))) {
        return Refuse(written, text, Expectation(rule));
      }
      value = stripped;
      break;
    case ValueKind::kList: {
      std::vector<std::string> items = SplitList(raw);
      if (rule.non_empty && items.empty()) return Refuse(written, text, Expectation(rule));
      value = std::move(items);
      break;
    }
  }
  if (rule.check) {
    if (absl::Status s = rule.check(value); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("config key '", written, "': ", s.message()));
    }
  }
  return value;
}

std::string FormatValue(const KeySpec& spec, const Value& value) {
  switch (spec.rule.kind) {
    case ValueKind::kInt:
      return absl::StrCat(std::get<int64_t>(value));
    case ValueKind::kDouble:
      return FormatNumber(std::get<double>(value));
    case ValueKind::kBool:
      return std::get<bool>(value) ? "true" : "false";
    case ValueKind::kString:
    case ValueKind::kEnum:
    case ValueKind::kHostPort:
      return std::get<std::string>(value);
    case ValueKind::kDuration:
      return FormatNumber(InUnit(std::get<std::chrono::milliseconds>(value), spec.rule.unit));
    case ValueKind::kList:
      return absl::StrJoin(std::get<std::vector<std::string>>(value), ",");
  }
  return "";
}

std::string TypeName(const ValueRule& rule) {
  switch (rule.kind) {
    case ValueKind::kInt:
      return "int";
    case ValueKind::kDouble:
      return "float";
    case ValueKind::kBool:
      return "bool";
    case ValueKind::kString:
      return "string";
    case ValueKind::kEnum:
      return absl::StrJoin(rule.choices ? rule.choices() : std::vector<std::string>{}, "|");
    case ValueKind::kDuration:
      return rule.unit == DurationUnit::kSeconds ? "duration (s)" : "duration (ms)";
    case ValueKind::kHostPort:
      return "host:port";
    case ValueKind::kList:
      return "list";
  }
  return "";
}

std::string Expectation(const ValueRule& rule) {
  switch (rule.kind) {
    case ValueKind::kInt: {
      constexpr int64_t kLowest = std::numeric_limits<int64_t>::min();
      constexpr int64_t kHighest = std::numeric_limits<int64_t>::max();
      if (rule.int_min == kLowest && rule.int_max == kHighest) return "an integer";
      if (rule.int_max == kHighest) return absl::StrCat("an integer >= ", rule.int_min);
      if (rule.int_min == kLowest) return absl::StrCat("an integer <= ", rule.int_max);
      return absl::StrCat("an integer in [", rule.int_min, ", ", rule.int_max, "]");
    }
    case ValueKind::kDouble:
      return NumberRange(rule, "a number");
    case ValueKind::kBool:
      return "true or false";
    case ValueKind::kString:
      return rule.non_empty ? "a non-empty string" : "a string";
    case ValueKind::kEnum:
      return absl::StrCat(
          "one of ",
          absl::StrJoin(rule.choices ? rule.choices() : std::vector<std::string>{}, ", "));
    case ValueKind::kDuration:
      return NumberRange(rule, absl::StrCat("a number of ", UnitName(rule.unit))) +
             " (or with a suffix: ms, s, m, h)";
    case ValueKind::kHostPort:
      return rule.allow_empty ? "host:port (e.g. 127.0.0.1:9443) or nothing"
                              : "host:port (e.g. 127.0.0.1:9443)";
    case ValueKind::kList:
      return rule.non_empty ? "a non-empty comma-separated list" : "a comma-separated list";
  }
  return "";
}

absl::StatusOr<std::string> ReadTextFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::InvalidArgumentError(absl::StrCat("cannot read config file '", path, "'"));
  std::stringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read config file '", path, "'"));
  }
  return text.str();
}

absl::StatusOr<std::vector<KeyTableBase::Entry>> KeyTableBase::FlattenYaml(
    const std::string& text, const std::string& origin) {
  const std::string where = origin.empty() ? "config" : origin;
  std::vector<Entry> entries;
  try {
    const YAML::Node root = YAML::Load(text);
    if (root.IsNull()) return entries;  // an empty document changes nothing
    if (!root.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": the top level must be a mapping of keys to values"));
    }
    if (absl::Status s = Flatten(root, "", entries); !s.ok()) {
      return origin.empty() ? s : absl::Status(s.code(), absl::StrCat(origin, ": ", s.message()));
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": not valid YAML or JSON: ", e.what()));
  }
  return entries;
}

absl::StatusOr<KeyTableBase::Entry> KeyTableBase::ParseOverride(const std::string& assignment) {
  const size_t eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--set expects key=value, got '", assignment, "'"));
  }
  return Entry{std::string(absl::StripAsciiWhitespace(assignment.substr(0, eq))),
               RawValue{assignment.substr(eq + 1), std::nullopt}};
}

std::vector<std::string> KeyTableBase::Names() const {
  std::vector<std::string> names;
  for (const KeySpec& s : specs_) names.push_back(s.name);
  return names;
}

void KeyTableBase::SuggestLeaf(std::string from, std::string to) {
  leaf_hints_[std::move(from)] = std::move(to);
}

void KeyTableBase::MergeLeafHints(const KeyTableBase& other) {
  for (const auto& [from, to] : other.leaf_hints_) leaf_hints_.emplace(from, to);
}

std::optional<size_t> KeyTableBase::Find(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) return std::nullopt;
  return it->second;
}

void KeyTableBase::AddSpec(KeySpec spec) {
  const size_t i = specs_.size();
  auto add = [&](const std::string& name) {
    if (!index_.emplace(name, i).second) {
      // Two keys of one table with one name: a programmer error in the table.
      std::fprintf(stderr, "fedge: config key '%s' is defined twice\n", name.c_str());
      std::abort();
    }
  };
  add(spec.name);
  for (const std::string& alias : spec.aliases) add(alias);
  specs_.push_back(std::move(spec));
}

absl::Status KeyTableBase::UnknownKey(const std::string& name, const RawValue& raw) const {
  // A section given a value ("train: 5" or "train: [1, 2]").
  const std::string section = name + ".";
  for (const KeySpec& spec : specs_) {
    if (spec.name.rfind(section, 0) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("config key '", name, "' is a section: give its keys (e.g. ", spec.name,
                       "), not ", raw.items ? "a list" : "a single value"));
    }
  }
  std::string leaf = Leaf(name);
  if (auto it = leaf_hints_.find(leaf); it != leaf_hints_.end()) leaf = it->second;
  std::string best;
  size_t best_distance = std::numeric_limits<size_t>::max();
  // The canonical name is suggested, also when an alias is the closer one;
  // on a tie, the key that comes first in the table.
  for (const KeySpec& spec : specs_) {
    std::vector<const std::string*> names = {&spec.name};
    for (const std::string& alias : spec.aliases) names.push_back(&alias);
    for (const std::string* known : names) {
      size_t d = EditDistance(name, *known);
      if (Leaf(*known) == leaf) d = std::min<size_t>(d, 1);  // right name, wrong section
      if (d < best_distance) {
        best_distance = d;
        best = spec.name;
      }
    }
  }
  const std::string hint = best_distance <= std::max<size_t>(3, name.size() / 3)
                               ? absl::StrCat("; did you mean '", best, "'?")
                               : "";
  const std::string where = program_.empty()
                                ? absl::StrCat("known keys: ", absl::StrJoin(Names(), ", "))
                                : absl::StrCat(program_, " --help lists every key");
  return absl::InvalidArgumentError(
      absl::StrCat("unknown config key '", name, "'", hint, " (", where, ")"));
}

std::string KeyTableBase::HelpText(const std::vector<KeyInfo>& info) {
  std::string out;
  for (const KeyInfo& k : info) {
    const std::string aliases =
        k.aliases.empty() ? "" : absl::StrCat(" (also: ", absl::StrJoin(k.aliases, ", "), ")");
    absl::StrAppendFormat(&out, "  %-30s %s%s  [%s, default %s]\n", k.key, k.help, aliases, k.type,
                          k.value.empty() ? "unset" : k.value);
  }
  return out;
}

}  // namespace fedge::config
