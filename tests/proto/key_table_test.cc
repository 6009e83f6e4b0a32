#include "fedge/proto/key_table.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace fedge::config {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

MATCHER_P(IsInvalidWith, text, "") {
  return arg.code() == absl::StatusCode::kInvalidArgument &&
         ::testing::Value(std::string(arg.message()), HasSubstr(text));
}

// A group of keys shared by two tables (like strategy.*).
struct Shared {
  std::string name = "alpha";
  double weight = 0.5;
};

KeyTable<Shared> SharedKeys() {
  return KeyTable<Shared>(
      "", {Key<Shared>::Enum(
               "shared.name", "Which one.",
               [] {
                 return std::vector<std::string>{"alpha", "beta"};
               },
               [](const Shared& s) { return s.name; },
               [](Shared& s, const std::string& v) { s.name = v; })
               .Alias("shared"),
           Key<Shared>::Double(
               "shared.weight", "A weight.", [](const Shared& s) { return s.weight; },
               [](Shared& s, double v) { s.weight = v; })
               .AtLeast(0)
               .AtMost(1)});
}

struct Options {
  int64_t rounds = 10;
  int64_t seed = 0;
  double rate = 0.1;
  double momentum = 0.0;
  bool verbose = false;
  std::string name = "run";
  std::string note;
  std::string mode = "auto";
  std::chrono::milliseconds deadline{120'000};
  std::chrono::milliseconds poll{500};
  std::string listen = "127.0.0.1:7443";
  std::string ops;
  std::vector<std::string> detectors = {"ks"};
  std::vector<std::string> tags;
  std::string strategy = "alpha";
  double strategy_weight = 0.5;
};

KeyTable<Options> Table() {
  using K = Key<Options>;
  KeyTable<Options> table(
      "tool",
      {
          K::Int(
              "round.rounds", "Rounds to run.", [](const Options& o) { return o.rounds; },
              [](Options& o, int64_t v) { o.rounds = v; })
              .Min(1)
              .Max(100)
              .Alias("rounds.count"),
          K::Int(
              "run.seed", "Seed.", [](const Options& o) { return o.seed; },
              [](Options& o, int64_t v) { o.seed = v; })
              .Min(0),
          K::Double(
              "train.learning_rate", "Rate.", [](const Options& o) { return o.rate; },
              [](Options& o, double v) { o.rate = v; })
              .Above(0),
          K::Double(
              "train.momentum", "Momentum.", [](const Options& o) { return o.momentum; },
              [](Options& o, double v) { o.momentum = v; })
              .AtLeast(0)
              .Below(1),
          K::Bool(
              "run.verbose", "Talk.", [](const Options& o) { return o.verbose; },
              [](Options& o, bool v) { o.verbose = v; }),
          K::String(
              "run.name", "Title.", [](const Options& o) { return o.name; },
              [](Options& o, const std::string& v) { o.name = v; })
              .NonEmpty(),
          K::String(
              "run.note", "Free text.", [](const Options& o) { return o.note; },
              [](Options& o, const std::string& v) { o.note = v; }),
          K::Enum(
              "run.mode", "Mode.",
              [] {
                return std::vector<std::string>{"auto", "off", "on"};
              },
              [](const Options& o) { return o.mode; },
              [](Options& o, const std::string& v) { o.mode = v; }),
          K::Duration(
              "round.deadline_s", "Seconds open.", DurationUnit::kSeconds,
              [](const Options& o) { return o.deadline; },
              [](Options& o, std::chrono::milliseconds v) { o.deadline = v; })
              .AtLeast(0.001)
              .AtMost(1e6),
          K::Duration(
              "poll_wait_ms", "Poll.", DurationUnit::kMilliseconds,
              [](const Options& o) { return o.poll; },
              [](Options& o, std::chrono::milliseconds v) { o.poll = v; })
              .AtLeast(1),
          K::HostPort(
              "listen", "Address.", [](const Options& o) { return o.listen; },
              [](Options& o, const std::string& v) { o.listen = v; }),
          K::HostPort(
              "ops.listen", "Ops address.", [](const Options& o) { return o.ops; },
              [](Options& o, const std::string& v) { o.ops = v; })
              .Optional(),
          K::List(
              "monitor.detectors", "Detectors.", [](const Options& o) { return o.detectors; },
              [](Options& o, std::vector<std::string> v) { o.detectors = std::move(v); })
              .NonEmpty()
              .Check([](const Value& v) {
                for (const std::string& d : std::get<std::vector<std::string>>(v)) {
                  if (d != "ks" && d != "adwin") {
                    return absl::InvalidArgumentError("unknown detector '" + d + "'");
                  }
                }
                return absl::OkStatus();
              }),
          K::List(
              "run.tags", "Tags.", [](const Options& o) { return o.tags; },
              [](Options& o, std::vector<std::string> v) { o.tags = std::move(v); }),
      });
  table.Include(
      SharedKeys(),
      [](const Options& o) {
        return Shared{o.strategy, o.strategy_weight};
      },
      [](Options& o, Shared s) {
        o.strategy = s.name;
        o.strategy_weight = s.weight;
      });
  table.SuggestLeaf("lr", "learning_rate");
  return table;
}

std::string Describe(const KeyTable<Options>& table, const Options& o) {
  std::string out;
  for (const KeyInfo& k : table.Describe(o)) out += k.key + "=" + k.value + "\n";
  return out;
}

TEST(KeyTableTest, SetsEveryKindOfKey) {
  const KeyTable<Options> table = Table();
  Options o;
  ASSERT_TRUE(table.Set(o, "round.rounds", "7").ok());
  ASSERT_TRUE(table.Set(o, "train.learning_rate", " 0.25 ").ok());
  ASSERT_TRUE(table.Set(o, "run.verbose", "on").ok());
  ASSERT_TRUE(table.Set(o, "run.name", "exp").ok());
  ASSERT_TRUE(table.Set(o, "run.note", "").ok());
  ASSERT_TRUE(table.Set(o, "run.mode", "off").ok());
  ASSERT_TRUE(table.Set(o, "round.deadline_s", "1.5").ok());
  ASSERT_TRUE(table.Set(o, "poll_wait_ms", "250").ok());
  ASSERT_TRUE(table.Set(o, "listen", "0.0.0.0:0").ok());
  ASSERT_TRUE(table.Set(o, "ops.listen", "").ok());
  ASSERT_TRUE(table.Set(o, "monitor.detectors", " ks , adwin ").ok());
  ASSERT_TRUE(table.Set(o, "shared.weight", "1").ok());
  EXPECT_EQ(o.rounds, 7);
  EXPECT_DOUBLE_EQ(o.rate, 0.25);
  EXPECT_TRUE(o.verbose);
  EXPECT_EQ(o.name, "exp");
  EXPECT_EQ(o.mode, "off");
  EXPECT_EQ(o.deadline, std::chrono::milliseconds(1500));
  EXPECT_EQ(o.poll, std::chrono::milliseconds(250));
  EXPECT_EQ(o.listen, "0.0.0.0:0");
  EXPECT_EQ(o.ops, "");
  EXPECT_THAT(o.detectors, ElementsAre("ks", "adwin"));
  EXPECT_DOUBLE_EQ(o.strategy_weight, 1.0);
}

TEST(KeyTableTest, BoolsAcceptTheUsualSpellings) {
  const KeyTable<Options> table = Table();
  Options o;
  for (const char* yes : {"true", "True", "on", "yes", "1"}) {
    o.verbose = false;
    ASSERT_TRUE(table.Set(o, "run.verbose", yes).ok()) << yes;
    EXPECT_TRUE(o.verbose) << yes;
  }
  for (const char* no : {"false", "OFF", "no", "0"}) {
    o.verbose = true;
    ASSERT_TRUE(table.Set(o, "run.verbose", no).ok()) << no;
    EXPECT_FALSE(o.verbose) << no;
  }
}

TEST(KeyTableTest, DurationsTakeTheKeysUnitOrASuffix) {
  const KeyTable<Options> table = Table();
  Options o;
  ASSERT_TRUE(table.Set(o, "round.deadline_s", "250ms").ok());
  EXPECT_EQ(o.deadline, std::chrono::milliseconds(250));
  ASSERT_TRUE(table.Set(o, "round.deadline_s", "2m").ok());
  EXPECT_EQ(o.deadline, std::chrono::milliseconds(120'000));
  ASSERT_TRUE(table.Set(o, "round.deadline_s", "1h").ok());
  EXPECT_EQ(o.deadline, std::chrono::milliseconds(3'600'000));
  ASSERT_TRUE(table.Set(o, "poll_wait_ms", "3s").ok());
  EXPECT_EQ(o.poll, std::chrono::milliseconds(3000));
  // The range is in the key's unit: 1 h = 3600 s is in [0.001, 1e6].
  EXPECT_THAT(table.Set(o, "round.deadline_s", "20000m"),
              IsInvalidWith("a number of seconds in [0.001, 1e+06]"));
}

TEST(KeyTableTest, EveryValidationBranchNamesTheKeyAndChangesNothing) {
  const KeyTable<Options> table = Table();
  const Options original;
  struct Case {
    std::string key, value, expect;
  };
  const std::vector<Case> cases = {
      {"round.rounds", "0", "config key 'round.rounds': expected an integer in [1, 100], got '0'"},
      {"round.rounds", "101", "an integer in [1, 100]"},
      {"round.rounds", "1.5", "an integer in [1, 100]"},
      {"round.rounds", "99999999999999999999", "round.rounds"},
      {"run.seed", "-1", "config key 'run.seed': expected an integer >= 0, got '-1'"},
      {"train.learning_rate", "0", "config key 'train.learning_rate': expected a number > 0"},
      {"train.learning_rate", "fast", "got 'fast'"},
      {"train.learning_rate", "nan", "train.learning_rate"},
      {"train.learning_rate", "inf", "train.learning_rate"},
      {"train.momentum", "-0.1", "a number in [0, 1)"},
      {"train.momentum", "1", "a number in [0, 1)"},
      {"run.verbose", "maybe", "config key 'run.verbose': expected true or false, got 'maybe'"},
      {"run.name", "", "config key 'run.name': expected a non-empty string, got ''"},
      {"run.mode", "sideways",
       "config key 'run.mode': unknown value 'sideways'; known: auto, "
       "off, on"},
      {"round.deadline_s", "soon", "config key 'round.deadline_s': expected a number of seconds"},
      {"round.deadline_s", "0", "in [0.001, 1e+06]"},
      {"poll_wait_ms", "0.4", "a number of milliseconds >= 1"},
      {"listen", "", "config key 'listen': expected host:port (e.g. 127.0.0.1:9443), got ''"},
      {"listen", "localhost", "host:port"},
      {"listen", ":80", "host:port"},
      {"listen", "h:70000", "host:port"},
      {"ops.listen", "h:port", "config key 'ops.listen': expected host:port"},
      {"monitor.detectors", " , ", "expected a non-empty comma-separated list"},
      {"monitor.detectors", "ks,cusum", "config key 'monitor.detectors': unknown detector 'cusum'"},
      {"shared.weight", "2", "config key 'shared.weight': expected a number in [0, 1], got '2'"},
      {"shared.name", "gamma", "known: alpha, beta"},
  };
  for (const Case& c : cases) {
    Options o = original;
    EXPECT_THAT(table.Set(o, c.key, c.value), IsInvalidWith(c.expect)) << c.key << "=" << c.value;
    EXPECT_EQ(Describe(table, o), Describe(table, original)) << c.key;
  }
}

TEST(KeyTableTest, UnknownKeysSuggestTheClosestKnownKey) {
  const KeyTable<Options> table = Table();
  Options o;
  EXPECT_THAT(table.Set(o, "train.learning_rat", "1"),
              IsInvalidWith("unknown config key 'train.learning_rat'; did you mean "
                            "'train.learning_rate'? (tool --help lists every key)"));
  // The right name in the wrong section.
  EXPECT_THAT(table.Set(o, "train.rounds", "1"), IsInvalidWith("did you mean 'round.rounds'"));
  // A name from another framework, through the leaf hints.
  EXPECT_THAT(table.Set(o, "train.lr", "1"), IsInvalidWith("did you mean 'train.learning_rate'"));
  // Close to an alias: the canonical name is suggested.
  EXPECT_THAT(table.Set(o, "rounds.cont", "1"), IsInvalidWith("did you mean 'round.rounds'"));
  // Nothing close: no suggestion.
  absl::Status far = table.Set(o, "completely.unrelated.setting", "1");
  EXPECT_THAT(far, IsInvalidWith("unknown config key 'completely.unrelated.setting'"));
  EXPECT_THAT(std::string(far.message()), Not(HasSubstr("did you mean")));
  // A table without a program lists its keys instead of pointing at --help.
  Shared s;
  EXPECT_THAT(SharedKeys().Set(s, "shared.nme", "beta"),
              IsInvalidWith("(known keys: shared.name, shared.weight)"));
}

TEST(KeyTableTest, AliasesAreAcceptedAndErrorsQuoteTheNameWritten) {
  const KeyTable<Options> table = Table();
  Options o;
  ASSERT_TRUE(table.Set(o, "rounds.count", "5").ok());
  EXPECT_EQ(o.rounds, 5);
  ASSERT_TRUE(table.ApplyYaml(o, "shared: beta\n", "a.yaml").ok());
  EXPECT_EQ(o.strategy, "beta");
  EXPECT_THAT(table.Set(o, "rounds.count", "0"), IsInvalidWith("config key 'rounds.count'"));
  EXPECT_TRUE(table.Contains("shared"));
  EXPECT_FALSE(table.Contains("shared.nothing"));
}

TEST(KeyTableTest, YamlNestingFlattensToDottedKeys) {
  const KeyTable<Options> table = Table();
  Options o;
  ASSERT_TRUE(table
                  .ApplyYaml(o, R"(
round:
  rounds: 3
  deadline_s: 30
train:
  learning_rate: 0.02
shared:
  name: beta
  weight: 0.25
monitor:
  detectors: [adwin, ks]
listen: 10.0.0.1:99
)",
                             "exp.yaml")
                  .ok());
  EXPECT_EQ(o.rounds, 3);
  EXPECT_EQ(o.deadline, std::chrono::seconds(30));
  EXPECT_DOUBLE_EQ(o.rate, 0.02);
  EXPECT_EQ(o.strategy, "beta");
  EXPECT_DOUBLE_EQ(o.strategy_weight, 0.25);
  EXPECT_THAT(o.detectors, ElementsAre("adwin", "ks"));
  EXPECT_EQ(o.listen, "10.0.0.1:99");
  // JSON is YAML too.
  ASSERT_TRUE(
      table.ApplyYaml(o, R"({"round": {"rounds": 4}, "run": {"tags": ["a", "b"]}})", "").ok());
  EXPECT_EQ(o.rounds, 4);
  EXPECT_THAT(o.tags, ElementsAre("a", "b"));
  EXPECT_TRUE(table.ApplyYaml(o, "", "empty.yaml").ok());
}

TEST(KeyTableTest, BadDocumentsAreRefusedWholeAndNameTheOrigin) {
  const KeyTable<Options> table = Table();
  Options o;
  const std::string before = Describe(table, o);
  struct Case {
    std::string text, expect;
  };
  const std::vector<Case> cases = {
      {"round:\n  rounds: 5\ntrain:\n  lr: 0.1\n", "bad.yaml: unknown config key 'train.lr'"},
      {"round:\n  rounds: 5\n  deadline_s: -1\n", "bad.yaml: config key 'round.deadline_s'"},
      {"run:\n  name: [1, 2]\n",
       "bad.yaml: config key 'run.name' must be a single value, not a "
       "list"},
      {"round: [1, 2]",
       "config key 'round' is a section: give its keys (e.g. round.rounds), not "
       "a list"},
      {"train: 3",
       "config key 'train' is a section: give its keys (e.g. train.learning_rate), "
       "not a single value"},
      {"run:\n  tags: [[1], 2]\n", "'run.tags' must be a list of single values"},
      {"round:\n  rounds:\n", "bad.yaml: config key 'round.rounds' has no value"},
      {"round: {rounds: [", "bad.yaml: not valid YAML or JSON"},
      {"- a\n- b\n", "bad.yaml: the top level must be a mapping of keys to values"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(table.ApplyYaml(o, c.text, "bad.yaml"), IsInvalidWith(c.expect)) << c.text;
    EXPECT_EQ(Describe(table, o), before) << c.text;  // round.rounds=5 was not applied either
  }
  // Without an origin, messages start at the key.
  EXPECT_THAT(table.ApplyYaml(o, "round: {rounds: 0}", ""),
              IsInvalidWith("config key 'round.rounds'"));
}

TEST(KeyTableTest, SetOverridesTheFile) {
  const KeyTable<Options> table = Table();
  const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                     ("key_table_test_" + std::to_string(::getpid()) + ".yaml");
  std::ofstream(file) << "round:\n  rounds: 3\nrun:\n  name: from-file\n";
  Options o;
  ASSERT_TRUE(table.ApplyFile(o, file.string()).ok());
  ASSERT_TRUE(table.ApplyOverride(o, "round.rounds=9").ok());
  ASSERT_TRUE(table.ApplyOverride(o, "run.note=a=b").ok());  // the first '=' splits
  EXPECT_EQ(o.rounds, 9);
  EXPECT_EQ(o.name, "from-file");
  EXPECT_EQ(o.note, "a=b");
  std::filesystem::remove(file);

  EXPECT_THAT(table.ApplyFile(o, file.string()), IsInvalidWith("cannot read config file"));
  EXPECT_THAT(table.ApplyOverride(o, "round.rounds"), IsInvalidWith("--set expects key=value"));
  EXPECT_THAT(table.ApplyOverride(o, "=3"), IsInvalidWith("--set expects key=value"));
  EXPECT_THAT(table.ApplyOverride(o, "round.rouds=3"), IsInvalidWith("did you mean"));
  EXPECT_EQ(o.rounds, 9);
}

TEST(KeyTableTest, RequiredKeysAreCheckedByValue) {
  const KeyTable<Options> table = Table();
  Options o;
  EXPECT_TRUE(table.CheckRequired(o, {"run.name", "listen"}).ok());
  EXPECT_THAT(table.CheckRequired(o, {"run.name", "run.note"}),
              IsInvalidWith("config key 'run.note' is required"));
  o.note = "x";
  EXPECT_TRUE(table.CheckRequired(o, {"run.note"}).ok());
}

TEST(KeyTableTest, HelpIsGeneratedFromTheTable) {
  const KeyTable<Options> table = Table();
  const std::string help = table.Help(Options{});
  EXPECT_THAT(help, HasSubstr("round.rounds"));
  EXPECT_THAT(help, HasSubstr("Rounds to run. (also: rounds.count)  [int, default 10]"));
  EXPECT_THAT(help, HasSubstr("[auto|off|on, default auto]"));
  EXPECT_THAT(help, HasSubstr("[duration (s), default 120]"));
  EXPECT_THAT(help, HasSubstr("[duration (ms), default 500]"));
  EXPECT_THAT(help, HasSubstr("[host:port, default 127.0.0.1:7443]"));
  EXPECT_THAT(help, HasSubstr("[list, default ks]"));
  EXPECT_THAT(help, HasSubstr("[string, default unset]"));
  EXPECT_THAT(help, HasSubstr("shared.weight"));
  // One line per key.
  EXPECT_EQ(static_cast<size_t>(std::count(help.begin(), help.end(), '\n')), table.Names().size());
}

TEST(KeyTableTest, DescribedValuesReadBackUnchanged) {
  const KeyTable<Options> table = Table();
  Options o;
  ASSERT_TRUE(table
                  .ApplyYaml(o,
                             "train: {learning_rate: 0.0625, momentum: 0.5}\n"
                             "round: {deadline_s: 0.25}\nrun: {tags: [x, y]}\n",
                             "")
                  .ok());
  Options copy;
  for (const KeyInfo& k : table.Describe(o)) {
    ASSERT_TRUE(table.Set(copy, k.key, k.value).ok()) << k.key << "=" << k.value;
  }
  EXPECT_EQ(Describe(table, copy), Describe(table, o));
  EXPECT_DOUBLE_EQ(copy.rate, 0.0625);
  EXPECT_EQ(copy.deadline, std::chrono::milliseconds(250));
}

TEST(KeyTableTest, IncludedGroupKeepsItsNamesAndMeaning) {
  // The same group in two tables over different structs: one key, one meaning.
  struct Other {
    Shared shared;
  };
  KeyTable<Other> other("other");
  other.Include(
      SharedKeys(), [](const Other& o) { return o.shared; },
      [](Other& o, Shared s) { o.shared = std::move(s); });
  Other a;
  Options b;
  ASSERT_TRUE(other.Set(a, "shared.weight", "0.75").ok());
  ASSERT_TRUE(Table().Set(b, "shared.weight", "0.75").ok());
  EXPECT_DOUBLE_EQ(a.shared.weight, b.strategy_weight);
  EXPECT_THAT(other.Set(a, "shared.weight", "-1"), IsInvalidWith("a number in [0, 1]"));
  EXPECT_THAT(Table().Set(b, "shared.weight", "-1"), IsInvalidWith("a number in [0, 1]"));
  EXPECT_EQ(other.Names(), (std::vector<std::string>{"shared.name", "shared.weight"}));
}

TEST(KeyTableTest, WithoutDropsKeysAndSectionsButKeepsTheRest) {
  const KeyTable<Options> full = Table();
  const KeyTable<Options> part = full.Without({"run", "listen"}, "part");
  EXPECT_FALSE(part.Contains("run.seed"));
  EXPECT_FALSE(part.Contains("run.verbose"));
  EXPECT_FALSE(part.Contains("listen"));
  EXPECT_TRUE(part.Contains("ops.listen"));                 // not under "listen."
  EXPECT_TRUE(part.Contains("rounds.count"));               // aliases come along
  EXPECT_EQ(part.Names().size(), full.Names().size() - 7);  // six run.* keys and listen
  Options o;
  EXPECT_THAT(part.Set(o, "run.seed", "3"), IsInvalidWith("unknown config key 'run.seed'"));
  EXPECT_THAT(part.Set(o, "train.lr", "1"),  // the leaf hints come along too
              IsInvalidWith("did you mean 'train.learning_rate'? (part --help lists every key)"));
  ASSERT_TRUE(part.Set(o, "round.rounds", "4").ok());
  EXPECT_EQ(o.rounds, 4);
}

// Two keys of one table with one name (or an alias that is another key's
// name) is an error in the table's code, not in any input: building the
// table stops the program at once, so every program's table, which its
// tests build, is checked by the suite before anyone runs it.
// A command line's layers: files, then --set. A key --set names is not read
// from the files, so --set replaces a value the file gets wrong; errors name
// the layer; a failure changes nothing.
TEST(KeyTableTest, LayersLetSetReplaceAFilesValue) {
  const KeyTable<Options> table = Table();
  const std::filesystem::path file =
      std::filesystem::path(::testing::TempDir()) / "layers.yaml";
  std::ofstream(file) << "round:\n  rounds: 500\nrun:\n  name: from-file\n  seed: 4\n";
  Options o;
  // The file alone is refused (500 is out of range), and names the file.
  absl::Status alone = table.ApplyLayers(o, {file.string()}, {}, {});
  EXPECT_THAT(alone.message(), HasSubstr(file.string() + ": config key 'round.rounds'"));
  EXPECT_EQ(o.rounds, 10);
  // --set replaces the value the file gets wrong; the rest of the file holds.
  ASSERT_TRUE(table.ApplyLayers(o, {file.string()}, {"round.rounds=7", "run.seed=9"},
                                {"--set round.rounds=7", "--set run.seed=9"})
                  .ok());
  EXPECT_EQ(o.rounds, 7);
  EXPECT_EQ(o.seed, 9);
  EXPECT_EQ(o.name, "from-file");
  // A bad --set is named by its label, and nothing changes.
  Options before = o;
  absl::Status bad = table.ApplyLayers(o, {file.string()}, {"round.rounds=7", "run.mode=loud"},
                                       {"--set round.rounds=7", "--set run.mode=loud"});
  EXPECT_THAT(bad.message(), HasSubstr("--set run.mode=loud: config key 'run.mode'"));
  EXPECT_EQ(o.name, before.name);
  EXPECT_EQ(o.rounds, before.rounds);
  EXPECT_THAT(table.ApplyLayers(o, {file.string() + ".missing"}, {}, {}).message(),
              HasSubstr("layers.yaml.missing"));
}

TEST(KeyTableDeathTest, ADuplicateKeyNameStopsTheTableBeingBuilt) {
  auto weight = [](const char* name) {
    return Key<Shared>::Double(
        name, "A weight.", [](const Shared& s) { return s.weight; },
        [](Shared& s, double v) { s.weight = v; });
  };
  EXPECT_DEATH(KeyTable<Shared>("", {weight("shared.weight"), weight("shared.weight")}),
               "config key 'shared.weight' is defined twice");
  EXPECT_DEATH(KeyTable<Shared>("", {weight("a.weight"), weight("b.weight").Alias("a.weight")}),
               "config key 'a.weight' is defined twice");
}

}  // namespace
}  // namespace fedge::config
