// KeyTable: the one configuration engine of fedge's programs (fedge-sim,
// fedge-aggregator, fedge-client) and of the C API.
//
// A program describes its settings once, as a table of typed keys over a
// plain options struct. The table then
//   * applies a YAML (or JSON) document, nested maps flattened to dotted keys
//     (`train: {learning_rate: 0.05}` sets `train.learning_rate`),
//   * applies `--set key=value` overrides,
//   * checks every value against its key's type and rule, and names the key
//     (and, for an unknown key, the closest known one) in its error,
//   * accepts aliases (old names of renamed keys),
//   * generates the `--help` key reference from the same entries.
// Tables compose: a group of keys written once over a small struct (e.g. the
// `strategy.*` keys, fedge/aggregator/shared_keys.h) is included in each program's
// table through a get/put pair, so a key means the same thing everywhere.
//
//   struct Options { int64_t rounds = 10; std::string name = "x"; };
//   using config::Key;
//   const config::KeyTable<Options> table("my-tool", {
//       Key<Options>::Int("round.rounds", "Rounds to run.",
//                         [](const Options& o) { return o.rounds; },
//                         [](Options& o, int64_t v) { o.rounds = v; }).Min(1),
//   });
//   Options options;
//   absl::Status s = table.ApplyYaml(options, text, "exp.yaml");
//
// Errors are INVALID_ARGUMENT, all-or-nothing: the options are unchanged when
// any key of a document or override is refused.
//
// Thread safety: a table is immutable once built; its const methods may run
// concurrently (the enum choice lists are called on each use, so plug-ins
// registered at start-up are accepted).
#ifndef FEDGE_PROTO_KEY_TABLE_H_
#define FEDGE_PROTO_KEY_TABLE_H_

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge::config {

enum class ValueKind {
  kInt,       // a signed 64-bit integer, optional [min, max]
  kDouble,    // a finite number, optional bounds (each open or closed)
  kBool,      // true/false, on/off, yes/no, 1/0
  kString,    // any text, optionally non-empty
  kEnum,      // one of a list of names
  kDuration,  // a number in the key's unit, or with a suffix (ms, s, m, h)
  kHostPort,  // host:port, port in [0, 65535]; optionally empty (= off)
  kList,      // comma-separated text or a YAML sequence of scalars
};

enum class DurationUnit { kMilliseconds, kSeconds };

// A key's value in typed form. Durations are held in milliseconds whatever
// the unit the key is written in.
using Value = std::variant<int64_t, double, bool, std::string, std::vector<std::string>,
                           std::chrono::milliseconds>;

// How a key's text is read and checked.
struct ValueRule {
  ValueKind kind = ValueKind::kString;
  int64_t int_min = std::numeric_limits<int64_t>::min();  // kInt
  int64_t int_max = std::numeric_limits<int64_t>::max();
  // kDouble and kDuration (the latter in the key's unit).
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false;
  bool max_open = false;
  DurationUnit unit = DurationUnit::kSeconds;  // kDuration
  bool non_empty = false;                      // kString, kList
  bool allow_empty = false;                    // kHostPort: "" turns it off
  // kEnum: the accepted names, called at each use.
  std::function<std::vector<std::string>()> choices;
  // kEnum: the names come from a registry that plug-ins extend (--plugin).
  bool pluggable = false;
  // Runs after the type and range checks; its message follows
  // "config key 'K': ".
  std::function<absl::Status(const Value&)> check;
};

// A value as a source gave it: text, or the items of a YAML sequence.
struct RawValue {
  std::string text;
  std::optional<std::vector<std::string>> items;
};

// Everything about a key except how it reaches the options struct.
struct KeySpec {
  std::string name;
  std::string help;
  ValueRule rule;
  std::vector<std::string> aliases;  // accepted in place of `name`
};

// Reads `raw` as a value of `spec`. `written` is the name the source used
// (the key or one of its aliases), quoted in the error.
absl::StatusOr<Value> ParseValue(const KeySpec& spec, const std::string& written,
                                 const RawValue& raw);
// The text form of `value` for help and reports. ParseValue reads it back to
// the same text; numbers keep 6 significant digits (as the reports always
// showed them), so a double with more digits reads back rounded.
std::string FormatValue(const KeySpec& spec, const Value& value);
// "int", "float", "bool", "string", "duration (s)", "host:port", "list" or
// "a|b|c" for an enum.
std::string TypeName(const ValueRule& rule);
// What a value must be, in words ("an integer in [1, 16]").
std::string Expectation(const ValueRule& rule);

// Reads a whole file; INVALID_ARGUMENT "cannot read config file 'P'".
absl::StatusOr<std::string> ReadTextFile(const std::string& path);

// Documentation and current value of one key.
struct KeyInfo {
  std::string key;
  std::string type;
  std::string value;  // text form, of the struct the description was made from
  std::string help;
  std::vector<std::string> aliases;
};

// The untyped half of a table: key names, aliases, lookup with suggestions,
// document flattening, help text. KeyTable<T> adds the typed bindings.
class KeyTableBase {
 public:
  // One setting from a document or an override, in source order.
  struct Entry {
    std::string key;
    RawValue value;
  };

  // Flattens a YAML/JSON document of nested maps into dotted entries.
  // INVALID_ARGUMENT (prefixed by `origin` when not empty) for text that is
  // not YAML, a top level that is not a map, a key without a value, or a
  // list of lists/maps.
  static absl::StatusOr<std::vector<Entry>> FlattenYaml(const std::string& text,
                                                        const std::string& origin);
  // Splits "key=value"; INVALID_ARGUMENT without a '=' or with an empty key.
  static absl::StatusOr<Entry> ParseOverride(const std::string& assignment);

  // The program named in the unknown-key error ("fedge-sim --help lists
  // every key"); empty: the error lists the known keys instead.
  const std::string& program() const { return program_; }
  // Every key's canonical name, in table order.
  std::vector<std::string> Names() const;
  // True when `name` is a key or an alias of one.
  bool Contains(const std::string& name) const { return Find(name).has_value(); }

  // Adds a name users bring from other frameworks, only ever used to
  // suggest: `leaf` is the last component of a key ("lr" -> "learning_rate").
  void SuggestLeaf(std::string from, std::string to);

  // Index of the key named `name` (or aliased so).
  std::optional<size_t> Find(const std::string& name) const;
  size_t size() const { return specs_.size(); }
  const KeySpec& spec(size_t i) const { return specs_[i]; }

  // The `--help` reference: one line per key with its help, type, aliases
  // and the value `info` shows (made from the program's defaults).
  static std::string HelpText(const std::vector<KeyInfo>& info);

 protected:
  explicit KeyTableBase(std::string program) : program_(std::move(program)) {}
  // INVALID_ARGUMENT "unknown config key 'K'; did you mean 'X'?", or, for
  // the name of a section of keys, that it needs its keys.
  absl::Status UnknownKey(const std::string& name, const RawValue& raw) const;
  // Registers a spec; a duplicate name or alias is a programmer error.
  void AddSpec(KeySpec spec);
  // Adds the leaf hints of `other` that this table does not have.
  void MergeLeafHints(const KeyTableBase& other);

 private:
  std::string program_;
  std::vector<KeySpec> specs_;
  std::map<std::string, size_t> index_;  // names and aliases
  std::map<std::string, std::string> leaf_hints_;
};

template <typename T>
class KeyTable;

// One typed key over options struct T: a spec plus a getter and a setter.
// Built by the named constructors and refined by the chaining setters, all of
// which return *this.
template <typename T>
class Key {
 public:
  template <typename V>
  using Get = std::function<V(const T&)>;
  template <typename V>
  using Set = std::function<void(T&, V)>;

  static Key Int(std::string name, std::string help, Get<int64_t> get, Set<int64_t> set) {
    return Key(std::move(name), std::move(help), ValueKind::kInt, Wrap(std::move(get)),
               Unwrap<int64_t>(std::move(set)));
  }
  static Key Double(std::string name, std::string help, Get<double> get, Set<double> set) {
    return Key(std::move(name), std::move(help), ValueKind::kDouble, Wrap(std::move(get)),
               Unwrap<double>(std::move(set)));
  }
  static Key Bool(std::string name, std::string help, Get<bool> get, Set<bool> set) {
    return Key(std::move(name), std::move(help), ValueKind::kBool, Wrap(std::move(get)),
               Unwrap<bool>(std::move(set)));
  }
  static Key String(std::string name, std::string help, Get<std::string> get,
                    Set<const std::string&> set) {
    return Key(std::move(name), std::move(help), ValueKind::kString, Wrap(std::move(get)),
               Unwrap<std::string>(std::move(set)));
  }
  // `choices` is called at each use (plug-ins may register names later).
  static Key Enum(std::string name, std::string help,
                  std::function<std::vector<std::string>()> choices, Get<std::string> get,
                  Set<const std::string&> set) {
    Key key(std::move(name), std::move(help), ValueKind::kEnum, Wrap(std::move(get)),
            Unwrap<std::string>(std::move(set)));
    key.spec_.rule.choices = std::move(choices);
    return key;
  }
  static Key Duration(std::string name, std::string help, DurationUnit unit,
                      Get<std::chrono::milliseconds> get, Set<std::chrono::milliseconds> set) {
    Key key(std::move(name), std::move(help), ValueKind::kDuration, Wrap(std::move(get)),
            Unwrap<std::chrono::milliseconds>(std::move(set)));
    key.spec_.rule.unit = unit;
    return key;
  }
  static Key HostPort(std::string name, std::string help, Get<std::string> get,
                      Set<const std::string&> set) {
    return Key(std::move(name), std::move(help), ValueKind::kHostPort, Wrap(std::move(get)),
               Unwrap<std::string>(std::move(set)));
  }
  static Key List(std::string name, std::string help, Get<std::vector<std::string>> get,
                  Set<std::vector<std::string>> set) {
    return Key(std::move(name), std::move(help), ValueKind::kList, Wrap(std::move(get)),
               Unwrap<std::vector<std::string>>(std::move(set)));
  }

  // kInt bounds (inclusive).
  Key& Min(int64_t min) { return spec_.rule.int_min = min, *this; }
  Key& Max(int64_t max) { return spec_.rule.int_max = max, *this; }
  // kDouble / kDuration bounds.
  Key& AtLeast(double min) { return Lower(min, false); }
  Key& Above(double min) { return Lower(min, true); }
  Key& AtMost(double max) { return Upper(max, false); }
  Key& Below(double max) { return Upper(max, true); }
  // kString / kList: refuse an empty value.
  Key& NonEmpty() { return spec_.rule.non_empty = true, *this; }
  // kHostPort: accept "" (the feature is off).
  Key& Optional() { return spec_.rule.allow_empty = true, *this; }
  // kEnum: plug-ins add names (an unknown one's error says how to load one).
  Key& Pluggable() { return spec_.rule.pluggable = true, *this; }
  // A further check on the parsed value (e.g. list items that must be
  // registered names).
  Key& Check(std::function<absl::Status(const Value&)> check) {
    return spec_.rule.check = std::move(check), *this;
  }
  // An old name of this key, still accepted.
  Key& Alias(std::string name) { return spec_.aliases.push_back(std::move(name)), *this; }

  const KeySpec& spec() const { return spec_; }

 private:
  friend class KeyTable<T>;
  template <typename>
  friend class KeyTable;

  using Getter = std::function<Value(const T&)>;
  using Setter = std::function<void(T&, const Value&)>;

  Key(std::string name, std::string help, ValueKind kind, Getter get, Setter set)
      : get_(std::move(get)), set_(std::move(set)) {
    spec_.name = std::move(name);
    spec_.help = std::move(help);
    spec_.rule.kind = kind;
  }
  Key(KeySpec spec, Getter get, Setter set)
      : spec_(std::move(spec)), get_(std::move(get)), set_(std::move(set)) {}

  template <typename V>
  static Getter Wrap(Get<V> get) {
    return [get = std::move(get)](const T& t) { return Value(std::in_place_type<V>, get(t)); };
  }
  template <typename V, typename Arg>
  static Setter Unwrap(std::function<void(T&, Arg)> set) {
    return [set = std::move(set)](T& t, const Value& v) { set(t, std::get<V>(v)); };
  }
  Key& Lower(double min, bool open) {
    spec_.rule.min = min;
    spec_.rule.min_open = open;
    return *this;
  }
  Key& Upper(double max, bool open) {
    spec_.rule.max = max;
    spec_.rule.max_open = open;
    return *this;
  }

  KeySpec spec_;
  Getter get_;
  Setter set_;
};

// The keys of one options struct T (copyable; T must be copyable).
template <typename T>
class KeyTable : public KeyTableBase {
 public:
  explicit KeyTable(std::string program, std::vector<Key<T>> keys = {})
      : KeyTableBase(std::move(program)) {
    for (Key<T>& key : keys) Add(std::move(key));
  }

  KeyTable& Add(Key<T> key) {
    AddSpec(key.spec_);
    bindings_.push_back({std::move(key.get_), std::move(key.set_)});
    return *this;
  }

  // Adds every key of `group`, reached through `get` (a copy of the group's
  // struct out of T) and `put` (writes it back). Names stay as the group
  // spells them, so the key means the same in every table including it.
  template <typename U>
  KeyTable& Include(const KeyTable<U>& group, std::type_identity_t<std::function<U(const T&)>> get,
                    std::type_identity_t<std::function<void(T&, U)>> put) {
    for (size_t i = 0; i < group.size(); ++i) {
      auto group_get = group.bindings_[i].get;
      auto group_set = group.bindings_[i].set;
      Add(Key<T>(
          group.spec(i), [get, group_get](const T& t) { return group_get(get(t)); },
          [get, put, group_set](T& t, const Value& v) {
            U u = get(t);
            group_set(u, v);
            put(t, std::move(u));
          }));
    }
    MergeLeafHints(group);
    return *this;
  }

  // A copy without the keys named in `names` or under a `prefix.` in it
  // (for a program that does not act on them yet).
  KeyTable Without(const std::vector<std::string>& names, std::string program) const {
    KeyTable out(std::move(program));
    for (size_t i = 0; i < size(); ++i) {
      const std::string& name = spec(i).name;
      const bool dropped = std::any_of(names.begin(), names.end(), [&](const std::string& n) {
        return name == n || name.rfind(n + ".", 0) == 0;
      });
      if (!dropped) out.Add(Key<T>(spec(i), bindings_[i].get, bindings_[i].set));
    }
    out.MergeLeafHints(*this);
    return out;
  }

  // Sets one key from text. `options` is unchanged on error.
  absl::Status Set(T& options, const std::string& key, const std::string& text) const {
    return Apply(options, key, RawValue{text, std::nullopt});
  }

  // Applies "key=value" (the argument of --set).
  absl::Status ApplyOverride(T& options, const std::string& assignment) const {
    absl::StatusOr<Entry> entry = ParseOverride(assignment);
    if (!entry.ok()) return entry.status();
    return Apply(options, entry->key, entry->value);
  }

  // Applies a YAML or JSON document; `origin` (a file name, or empty)
  // prefixes errors. All-or-nothing.
  absl::Status ApplyYaml(T& options, const std::string& text, const std::string& origin) const {
    absl::StatusOr<std::vector<Entry>> entries = FlattenYaml(text, origin);
    if (!entries.ok()) return entries.status();
    T candidate = options;
    for (const Entry& entry : *entries) {
      if (absl::Status s = Apply(candidate, entry.key, entry.value); !s.ok()) {
        return origin.empty()
                   ? s
                   : absl::Status(s.code(), std::string(origin) + ": " + std::string(s.message()));
      }
    }
    options = std::move(candidate);
    return absl::OkStatus();
  }

  // Reads and applies the YAML file at `path` ("cannot read config file").
  absl::Status ApplyFile(T& options, const std::string& path) const {
    absl::StatusOr<std::string> text = ReadTextFile(path);
    if (!text.ok()) return text.status();
    return ApplyYaml(options, *text, path);
  }

  // A command line's layers, all or nothing: the YAML `files` in order, then
  // the `assignments` ("key=value", as --set takes them; `labels[i]`, e.g.
  // "--set k=v", prefixes assignment i's error; each file prefixes its own).
  // A key an assignment sets is not read from the files at all, so --set
  // replaces a file's value, a wrong one included.
  absl::Status ApplyLayers(T& options, const std::vector<std::string>& files,
                           const std::vector<std::string>& assignments,
                           const std::vector<std::string>& labels) const {
    std::vector<std::pair<std::string, Entry>> entries;  // origin, entry
    std::vector<std::string> overridden;
    for (size_t i = 0; i < assignments.size(); ++i) {
      absl::StatusOr<Entry> entry = ParseOverride(assignments[i]);
      const std::string& label = i < labels.size() ? labels[i] : assignments[i];
      if (!entry.ok()) {
        return absl::Status(entry.status().code(),
                            label + ": " + std::string(entry.status().message()));
      }
      overridden.push_back(entry->key);
      entries.emplace_back(label, *std::move(entry));
    }
    std::vector<std::pair<std::string, Entry>> layered;
    for (const std::string& path : files) {
      absl::StatusOr<std::string> text = ReadTextFile(path);
      if (!text.ok()) return text.status();
      absl::StatusOr<std::vector<Entry>> flat = FlattenYaml(*text, path);
      if (!flat.ok()) return flat.status();
      for (Entry& entry : *flat) {
        if (std::find(overridden.begin(), overridden.end(), entry.key) != overridden.end()) {
          continue;
        }
        layered.emplace_back(path, std::move(entry));
      }
    }
    layered.insert(layered.end(), std::make_move_iterator(entries.begin()),
                   std::make_move_iterator(entries.end()));
    T candidate = options;
    for (const auto& [origin, entry] : layered) {
      if (absl::Status s = Apply(candidate, entry.key, entry.value); !s.ok()) {
        return absl::Status(s.code(), origin + ": " + std::string(s.message()));
      }
    }
    options = std::move(candidate);
    return absl::OkStatus();
  }

  // INVALID_ARGUMENT "config key 'K' is required" for the first of `keys`
  // whose value in `options` has an empty text form.
  absl::Status CheckRequired(const T& options, const std::vector<std::string>& keys) const {
    for (const std::string& name : keys) {
      std::optional<size_t> i = Find(name);
      if (i && FormatValue(spec(*i), bindings_[*i].get(options)).empty()) {
        return absl::InvalidArgumentError("config key '" + name + "' is required");
      }
    }
    return absl::OkStatus();
  }

  // Every key with its value in `options`, in table order.
  std::vector<KeyInfo> Describe(const T& options) const {
    std::vector<KeyInfo> out;
    for (size_t i = 0; i < size(); ++i) {
      const KeySpec& s = spec(i);
      out.push_back(
          {s.name, TypeName(s.rule), FormatValue(s, bindings_[i].get(options)), s.help, s.aliases});
    }
    return out;
  }

  // The `--help` key reference, defaults taken from `defaults`.
  std::string Help(const T& defaults) const { return HelpText(Describe(defaults)); }

 private:
  template <typename>
  friend class KeyTable;

  struct Binding {
    std::function<Value(const T&)> get;
    std::function<void(T&, const Value&)> set;
  };

  absl::Status Apply(T& options, const std::string& key, const RawValue& raw) const {
    std::optional<size_t> i = Find(key);
    if (!i) return UnknownKey(key, raw);
    absl::StatusOr<Value> value = ParseValue(spec(*i), key, raw);
    if (!value.ok()) return value.status();
    bindings_[*i].set(options, *value);
    return absl::OkStatus();
  }

  std::vector<Binding> bindings_;
};

}  // namespace fedge::config

#endif  // FEDGE_PROTO_KEY_TABLE_H_
