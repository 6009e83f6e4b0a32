// CapturingReporter: Google Benchmark's console output as usual, plus every
// counter of every successful iteration run, so a benchmark's main() can
// print ratios against a baseline measured in the same run.
#ifndef FEDGE_BENCH_CAPTURING_REPORTER_H_
#define FEDGE_BENCH_CAPTURING_REPORTER_H_

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <tuple>
#include <vector>

namespace fedge::bench {

class CapturingReporter : public benchmark::ConsoleReporter {
 public:
  // Colour only on a terminal, so logs stay free of escape codes.
  CapturingReporter()
      : benchmark::ConsoleReporter(isatty(fileno(stdout)) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    benchmark::ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred || run.run_type != Run::RT_Iteration) continue;
      for (const auto& [counter, value] : run.counters) {
        values_[{run.run_name.function_name, run.run_name.args, counter}] = value.value;
      }
    }
  }

  // The value of `counter` (e.g. "bytes_per_second", "items_per_second") of
  // benchmark `name` run with arguments `args` ("582026"; "" for none).
  // 0 when that run is missing or failed.
  double Counter(const std::string& name, const std::string& counter,
                 const std::string& args = "") const {
    const auto it = values_.find({name, args, counter});
    return it == values_.end() ? 0.0 : it->second;
  }

 private:
  std::map<std::tuple<std::string, std::string, std::string>, double> values_;
};

}  // namespace fedge::bench

#endif  // FEDGE_BENCH_CAPTURING_REPORTER_H_
