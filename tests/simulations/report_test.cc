#include "fedge/simulations/report.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "status_matchers.h"
#include "temp_dir.h"

namespace fedge::simulations {
namespace {

using ::fedge::testing_util::IsOk;
using ::fedge::testing_util::ScopedTempDir;
using ::fedge::testing_util::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    names.push_back(entry.path().filename().string());
  }
  return names;
}

size_t CountOccurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++count;
  }
  return count;
}

std::vector<RoundRecord> ThreeRounds() {
  return {
      {1, 0.5, 1.25, 1.5, 10, 5'000'000'000ULL, 12'345'678, 0.75, 0.75, INFINITY, 0.0, 0.25,
       900'000},
      {2, 0.625, 1.0, 1.125, 9, 4'500'000'000ULL, 12'345'678, 0.5, 1.25, INFINITY, 0.0, 0.5,
       800'000},
      {3, 0.875, 0.5, 0.625, 10, 5'000'000'000ULL, 12'345'678, 0.5, 1.75, INFINITY, 0.0, 0.8,
       400'000},
  };
}

RunSummary Summary() {
  RunSummary summary;
  summary.experiment = "fedavg cnn fashion-mnist";
  summary.rounds = 3;
  summary.final_accuracy = 0.875;
  summary.final_loss = 0.5;
  summary.best_accuracy = 0.875;
  summary.wall_seconds = 125.5;
  summary.bytes_up = 14'500'000'000ULL;
  summary.bytes_down = 37'037'034;
  summary.num_parameters = 1'234'567;
  summary.peak_rss_mb = 321.5;
  summary.artifact_bytes = 400'000;
  summary.fp32_artifact_bytes = 1'724'320;
  summary.sparsity = 0.8;
  summary.config = {{"rounds", "3"}, {"strategy", "fedavg"}, {"dataset", "fashion-mnist"}};
  return summary;
}

TEST(RoundsCsvTest, HeaderAndRowsParseBack) {
  ScopedTempDir dir;
  const std::string path = dir.File("rounds.csv");
  std::vector<RoundRecord> rounds = ThreeRounds();
  rounds[1].secagg_dropped = 2;
  rounds[2].secagg_aborted = true;
  ASSERT_THAT(WriteRoundsCsv(path, rounds), IsOk());

  std::vector<std::string> lines = absl::StrSplit(ReadFile(path), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0],
            "round,test_accuracy,test_loss,train_loss,participants,bytes_up,bytes_down,"
            "wall_seconds,elapsed_seconds,epsilon,clip_norm,sparsity,artifact_bytes,secagg_dropped,"
            "secagg_aborted");
  for (size_t i = 0; i < rounds.size(); ++i) {
    const std::vector<std::string> cells = absl::StrSplit(lines[i + 1], ',');
    ASSERT_EQ(cells.size(), 15u) << lines[i + 1];
    int round, participants;
    uint64_t bytes_up, bytes_down;
    double accuracy, test_loss, train_loss, wall, elapsed;
    ASSERT_TRUE(absl::SimpleAtoi(cells[0], &round));
    ASSERT_TRUE(absl::SimpleAtod(cells[1], &accuracy));
    ASSERT_TRUE(absl::SimpleAtod(cells[2], &test_loss));
    ASSERT_TRUE(absl::SimpleAtod(cells[3], &train_loss));
    ASSERT_TRUE(absl::SimpleAtoi(cells[4], &participants));
    ASSERT_TRUE(absl::SimpleAtoi(cells[5], &bytes_up));
    ASSERT_TRUE(absl::SimpleAtoi(cells[6], &bytes_down));
    ASSERT_TRUE(absl::SimpleAtod(cells[7], &wall));
    ASSERT_TRUE(absl::SimpleAtod(cells[8], &elapsed));
    double sparsity;
    uint64_t artifact_bytes;
    ASSERT_TRUE(absl::SimpleAtod(cells[11], &sparsity));
    ASSERT_TRUE(absl::SimpleAtoi(cells[12], &artifact_bytes));
    EXPECT_NEAR(sparsity, rounds[i].sparsity, 1e-6);
    EXPECT_EQ(artifact_bytes, rounds[i].artifact_bytes);
    int secagg_dropped = -1, secagg_aborted = -1;
    ASSERT_TRUE(absl::SimpleAtoi(cells[13], &secagg_dropped));
    ASSERT_TRUE(absl::SimpleAtoi(cells[14], &secagg_aborted));
    EXPECT_EQ(secagg_dropped, rounds[i].secagg_dropped);
    EXPECT_EQ(secagg_aborted, rounds[i].secagg_aborted ? 1 : 0);
    EXPECT_EQ(round, rounds[i].round);
    EXPECT_NEAR(accuracy, rounds[i].test_accuracy, 1e-6);
    EXPECT_NEAR(test_loss, rounds[i].test_loss, 1e-6);
    EXPECT_NEAR(train_loss, rounds[i].train_loss, 1e-6);
    EXPECT_EQ(participants, rounds[i].participants);
    EXPECT_EQ(bytes_up, rounds[i].bytes_up);
    EXPECT_EQ(bytes_down, rounds[i].bytes_down);
    EXPECT_NEAR(wall, rounds[i].wall_seconds, 1e-6);
    EXPECT_NEAR(elapsed, rounds[i].elapsed_seconds, 1e-6);
  }
}

TEST(RoundsCsvTest, KeepsSixDecimals) {
  ScopedTempDir dir;
  const std::string path = dir.File("rounds.csv");
  RoundRecord record;
  record.round = 1;
  record.test_accuracy = 0.1234567;
  ASSERT_THAT(WriteRoundsCsv(path, {record}), IsOk());
  EXPECT_THAT(ReadFile(path), HasSubstr("\n1,0.123457,"));
}

TEST(RoundsCsvTest, NoRoundsIsJustTheHeader) {
  ScopedTempDir dir;
  const std::string path = dir.File("rounds.csv");
  ASSERT_THAT(WriteRoundsCsv(path, {}), IsOk());
  EXPECT_EQ(ReadFile(path),
            "round,test_accuracy,test_loss,train_loss,participants,bytes_up,bytes_down,"
            "wall_seconds,elapsed_seconds,epsilon,clip_norm,sparsity,artifact_bytes,secagg_dropped,"
            "secagg_aborted\n");
}

TEST(SummaryJsonTest, HasEveryField) {
  ScopedTempDir dir;
  const std::string path = dir.File("summary.json");
  ASSERT_THAT(WriteSummaryJson(path, Summary(), ThreeRounds()), IsOk());
  const nlohmann::json json = nlohmann::json::parse(ReadFile(path));
  EXPECT_EQ(json.at("experiment"), "fedavg cnn fashion-mnist");
  EXPECT_EQ(json.at("rounds"), 3);
  EXPECT_DOUBLE_EQ(json.at("final_accuracy").get<double>(), 0.875);
  EXPECT_DOUBLE_EQ(json.at("final_loss").get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(json.at("best_accuracy").get<double>(), 0.875);
  EXPECT_DOUBLE_EQ(json.at("wall_seconds").get<double>(), 125.5);
  EXPECT_EQ(json.at("bytes_up").get<uint64_t>(), 14'500'000'000ULL);
  EXPECT_EQ(json.at("bytes_down").get<uint64_t>(), 37'037'034u);
  EXPECT_EQ(json.at("num_parameters").get<int64_t>(), 1'234'567);
  EXPECT_DOUBLE_EQ(json.at("peak_rss_mb").get<double>(), 321.5);
  EXPECT_EQ(json.at("artifact_bytes").get<uint64_t>(), 400'000u);
  EXPECT_EQ(json.at("fp32_artifact_bytes").get<uint64_t>(), 1'724'320u);
  EXPECT_DOUBLE_EQ(json.at("sparsity").get<double>(), 0.8);
  ASSERT_TRUE(json.at("config").is_object());
  EXPECT_EQ(json.at("config").size(), 3u);
  EXPECT_EQ(json.at("config").at("strategy"), "fedavg");
  EXPECT_EQ(json.at("config").at("rounds"), "3");
  EXPECT_EQ(json.at("config").at("dataset"), "fashion-mnist");
  EXPECT_THAT(json.at("per_round").get<std::vector<double>>(), ElementsAre(0.5, 0.625, 0.875));
}

TEST(SummaryJsonTest, DeviceModelAndStudentOnlyWhenMeasured) {
  ScopedTempDir dir;
  ASSERT_THAT(WriteSummaryJson(dir.File("plain.json"), Summary(), ThreeRounds()), IsOk());
  const nlohmann::json plain = nlohmann::json::parse(ReadFile(dir.File("plain.json")));
  EXPECT_FALSE(plain.contains("device_model"));
  EXPECT_FALSE(plain.contains("student"));

  RunSummary summary = Summary();
  DeviceModelSummary device;
  device.architecture = "cnn";
  device.parameters = 431'080;
  device.artifact_bytes = 1'724'400;
  device.accuracy = 0.875;
  device.int8_artifact_bytes = 433'000;
  device.int8_accuracy = 0.87;
  device.fp32_latency_us = 250.0;
  device.int8_latency_us = 125.0;
  device.int8_engine = "qnnpack";
  summary.device_model = device;
  DeviceModelSummary student;
  student.architecture = "mobilenet-tiny";
  student.accuracy = 0.8;  // int8 not measured: nulls
  summary.student = student;
  ASSERT_THAT(WriteSummaryJson(dir.File("summary.json"), summary, ThreeRounds()), IsOk());
  const nlohmann::json json = nlohmann::json::parse(ReadFile(dir.File("summary.json")));
  EXPECT_EQ(json.at("device_model").at("architecture"), "cnn");
  EXPECT_EQ(json.at("device_model").at("int8_artifact_bytes").get<uint64_t>(), 433'000u);
  EXPECT_DOUBLE_EQ(json.at("device_model").at("int8_latency_us").get<double>(), 125.0);
  EXPECT_EQ(json.at("device_model").at("int8_engine"), "qnnpack");
  EXPECT_DOUBLE_EQ(json.at("student").at("accuracy").get<double>(), 0.8);
  EXPECT_TRUE(json.at("student").at("int8_accuracy").is_null());

  ASSERT_THAT(WriteHtmlReport(dir.File("report.html"), summary, ThreeRounds()), IsOk());
  const std::string html = ReadFile(dir.File("report.html"));
  EXPECT_THAT(html, HasSubstr("Device model in int8"));
  EXPECT_THAT(html, HasSubstr("Distilled student"));
  EXPECT_THAT(html, HasSubstr("Weights pruned"));
}

TEST(SummaryJsonTest, SurvivesNanAndInvalidUtf8) {
  ScopedTempDir dir;
  const std::string path = dir.File("summary.json");
  RunSummary summary = Summary();
  summary.final_loss = NAN;
  summary.config.push_back({"note", "bad \xff byte \"quoted\""});
  ASSERT_THAT(WriteSummaryJson(path, summary, {}), IsOk());
  const nlohmann::json json = nlohmann::json::parse(ReadFile(path));
  EXPECT_TRUE(json.at("final_loss").is_null());
  EXPECT_THAT(json.at("config").at("note").get<std::string>(), HasSubstr("\"quoted\""));
  EXPECT_TRUE(json.at("per_round").is_array());
  EXPECT_TRUE(json.at("per_round").empty());
}

TEST(HtmlReportTest, SelfContainedWithThreeCharts) {
  ScopedTempDir dir;
  const std::string path = dir.File("report.html");
  ASSERT_THAT(WriteHtmlReport(path, Summary(), ThreeRounds()), IsOk());
  const std::string html = ReadFile(path);
  EXPECT_EQ(CountOccurrences(html, "<svg"), 3u);
  EXPECT_EQ(CountOccurrences(html, "</svg>"), 3u);
  // One line per series: accuracy; test + train loss; bytes up + down.
  EXPECT_EQ(CountOccurrences(html, "<polyline"), 5u);
  const std::string lower = absl::AsciiStrToLower(html);
  EXPECT_THAT(lower, Not(HasSubstr("http://")));
  EXPECT_THAT(lower, Not(HasSubstr("https://")));
  EXPECT_THAT(lower, Not(HasSubstr("<script")));
  EXPECT_THAT(lower, Not(HasSubstr("<link")));
  EXPECT_THAT(lower, Not(HasSubstr("nan")));
  EXPECT_THAT(html, HasSubstr("<!DOCTYPE html>"));
  EXPECT_THAT(html, HasSubstr("fedavg cnn fashion-mnist"));
  // Summary: final accuracy as a percentage, rounds, totals in human units.
  EXPECT_THAT(html, HasSubstr("87.50%"));
  EXPECT_THAT(html, HasSubstr("14.50 GB"));
  EXPECT_THAT(html, HasSubstr("37.04 MB"));
  EXPECT_THAT(html, HasSubstr("1,234,567"));
  EXPECT_THAT(html, HasSubstr("321.5 MB"));
  EXPECT_THAT(html, HasSubstr("2m 05.5s"));
  // Config table.
  EXPECT_THAT(html, HasSubstr("<th>strategy</th>"));
  EXPECT_THAT(html, HasSubstr("fedavg"));
  // Per-round bytes are plotted in GB (the largest value is 5e9 bytes).
  EXPECT_THAT(html, HasSubstr("GB per round"));
}

TEST(HtmlReportTest, EscapesConfigStrings) {
  ScopedTempDir dir;
  const std::string path = dir.File("report.html");
  RunSummary summary = Summary();
  summary.experiment = "a <b> & \"c\"";
  summary.config.push_back({"<key>", "<script>alert('x')</script>"});
  ASSERT_THAT(WriteHtmlReport(path, summary, ThreeRounds()), IsOk());
  const std::string html = ReadFile(path);
  EXPECT_THAT(html, Not(HasSubstr("<script>")));
  EXPECT_THAT(html, Not(HasSubstr("<key>")));
  EXPECT_THAT(html, Not(HasSubstr("<b>")));
  EXPECT_THAT(html, HasSubstr("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
  EXPECT_THAT(html, HasSubstr("&lt;key&gt;"));
  EXPECT_THAT(html, HasSubstr("a &lt;b&gt; &amp; &quot;c&quot;"));
}

TEST(HtmlReportTest, OneRoundAndConstantSeries) {
  ScopedTempDir dir;
  const std::string path = dir.File("report.html");
  RoundRecord only{1, 0.5, 2.0, 2.0, 4, 1000, 1000, 0.1, 0.1};
  ASSERT_THAT(WriteHtmlReport(path, Summary(), {only}), IsOk());
  const std::string html = ReadFile(path);
  EXPECT_EQ(CountOccurrences(html, "<svg"), 3u);
  // A single point per series is drawn as a dot, not a line.
  EXPECT_EQ(CountOccurrences(html, "<polyline"), 0u);
  EXPECT_EQ(CountOccurrences(html, "<circle"), 5u);
  const std::string lower = absl::AsciiStrToLower(html);
  EXPECT_THAT(lower, Not(HasSubstr("nan")));
  EXPECT_THAT(lower, Not(HasSubstr("inf")));

  std::vector<RoundRecord> flat;
  for (int r = 1; r <= 4; ++r) flat.push_back({r, 0.25, 1.0, 1.0, 4, 0, 0, 0.1, 0.1 * r});
  ASSERT_THAT(WriteHtmlReport(path, Summary(), flat), IsOk());
  const std::string flat_html = absl::AsciiStrToLower(ReadFile(path));
  EXPECT_EQ(CountOccurrences(flat_html, "<polyline"), 5u);
  EXPECT_THAT(flat_html, Not(HasSubstr("nan")));
  EXPECT_THAT(flat_html, Not(HasSubstr("inf")));
}

TEST(HtmlReportTest, NoRoundsAndMissingValues) {
  ScopedTempDir dir;
  const std::string path = dir.File("report.html");
  RunSummary summary = Summary();
  summary.final_loss = NAN;
  ASSERT_THAT(WriteHtmlReport(path, summary, {}), IsOk());
  const std::string html = ReadFile(path);
  EXPECT_EQ(CountOccurrences(html, "<svg"), 3u);
  EXPECT_THAT(html, HasSubstr("no data"));

  // A NaN test loss in round 2 leaves rounds 1 and 3 as isolated dots.
  std::vector<RoundRecord> rounds = ThreeRounds();
  rounds[1].test_loss = NAN;
  ASSERT_THAT(WriteHtmlReport(path, Summary(), rounds), IsOk());
  const std::string gappy = absl::AsciiStrToLower(ReadFile(path));
  EXPECT_THAT(gappy, Not(HasSubstr("nan,")));
  EXPECT_THAT(gappy, Not(HasSubstr(",nan")));
  // Test loss has no two consecutive finite rounds left: 4 polylines.
  EXPECT_EQ(CountOccurrences(gappy, "<polyline"), 4u);
}

TEST(PrivacyReportTest, EpsilonPerRoundInEveryReport) {
  ScopedTempDir dir;
  std::vector<RoundRecord> rounds = ThreeRounds();
  for (size_t i = 0; i < rounds.size(); ++i) {
    rounds[i].epsilon = 0.5 * static_cast<double>(i + 1);
    rounds[i].clip_norm = 0.25;
  }
  RunSummary summary = Summary();
  summary.privacy_mode = "central";
  summary.epsilon = 1.5;
  summary.delta = 1e-5;
  summary.stop_reason = "round 4 refused: privacy budget";

  ASSERT_THAT(WriteRoundsCsv(dir.File("rounds.csv"), rounds), IsOk());
  std::vector<std::string> lines =
      absl::StrSplit(ReadFile(dir.File("rounds.csv")), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u);
  for (size_t i = 0; i < rounds.size(); ++i) {
    const std::vector<std::string> cells = absl::StrSplit(lines[i + 1], ',');
    ASSERT_EQ(cells.size(), 15u);
    double epsilon = 0, clip = 0;
    ASSERT_TRUE(absl::SimpleAtod(cells[9], &epsilon));
    ASSERT_TRUE(absl::SimpleAtod(cells[10], &clip));
    EXPECT_DOUBLE_EQ(epsilon, rounds[i].epsilon);
    EXPECT_DOUBLE_EQ(clip, 0.25);
  }

  ASSERT_THAT(WriteSummaryJson(dir.File("summary.json"), summary, rounds), IsOk());
  const nlohmann::json json = nlohmann::json::parse(ReadFile(dir.File("summary.json")));
  EXPECT_EQ(json.at("privacy_mode"), "central");
  EXPECT_DOUBLE_EQ(json.at("epsilon").get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(json.at("delta").get<double>(), 1e-5);
  EXPECT_EQ(json.at("stop_reason"), "round 4 refused: privacy budget");
  ASSERT_EQ(json.at("per_round_epsilon").size(), 3u);
  EXPECT_DOUBLE_EQ(json.at("per_round_epsilon")[2].get<double>(), 1.5);

  ASSERT_THAT(WriteHtmlReport(dir.File("report.html"), summary, rounds), IsOk());
  const std::string html = ReadFile(dir.File("report.html"));
  EXPECT_THAT(html, HasSubstr("Privacy spent after each round"));
  EXPECT_THAT(html, HasSubstr("central: \u03b5 = 1.5"));
  EXPECT_THAT(html, HasSubstr("Stopped early"));
}

TEST(PrivacyReportTest, NonPrivateRunsSayInfinity) {
  ScopedTempDir dir;
  ASSERT_THAT(WriteRoundsCsv(dir.File("rounds.csv"), ThreeRounds()), IsOk());
  EXPECT_THAT(ReadFile(dir.File("rounds.csv")), HasSubstr(",inf,0,0.250000,900000,0,0\n"));
  ASSERT_THAT(WriteSummaryJson(dir.File("summary.json"), Summary(), ThreeRounds()), IsOk());
  const nlohmann::json json = nlohmann::json::parse(ReadFile(dir.File("summary.json")));
  EXPECT_EQ(json.at("privacy_mode"), "none");
  EXPECT_TRUE(json.at("epsilon").is_null());  // +inf
  EXPECT_FALSE(json.contains("per_round_epsilon"));
  ASSERT_THAT(WriteHtmlReport(dir.File("report.html"), Summary(), ThreeRounds()), IsOk());
  EXPECT_THAT(ReadFile(dir.File("report.html")), Not(HasSubstr("Privacy spent")));
}

TEST(ReportFilesTest, EveryReportWriterLeavesOnlyItsFile) {
  ScopedTempDir dir;
  ASSERT_THAT(WriteRoundsCsv(dir.File("rounds.csv"), ThreeRounds()), IsOk());
  ASSERT_THAT(WriteSummaryJson(dir.File("summary.json"), Summary(), ThreeRounds()), IsOk());
  ASSERT_THAT(WriteHtmlReport(dir.File("report.html"), Summary(), ThreeRounds()), IsOk());
  EXPECT_THAT(FilesIn(dir.path()),
              UnorderedElementsAre("rounds.csv", "summary.json", "report.html"));
}

TEST(ReportFilesTest, MissingDirectory) {
  ScopedTempDir dir;
  const std::string path = dir.File("missing/out.txt");
  EXPECT_THAT(WriteHtmlReport(path, Summary(), ThreeRounds()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(path)));
  EXPECT_TRUE(FilesIn(dir.path()).empty());
}

TEST(ReportFilesTest, PathWithoutFileName) {
  ScopedTempDir dir;
  EXPECT_THAT(WriteRoundsCsv(dir.path() + "/", ThreeRounds()),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace fedge::simulations
