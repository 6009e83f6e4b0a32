#include "fedge/aggregator/drift_tracker.h"

#include <cmath>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "status_matchers.h"

namespace fedge::aggregator {
namespace {

using ::fedge::testing_util::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

v1::DriftReport Report(const std::string& client, uint64_t version, bool join = true) {
  v1::DriftReport report;
  report.set_client_id(client);
  report.set_model_version(version);
  report.set_request_join(join);
  v1::DriftEvent* event = report.add_events();
  event->set_detector("ks");
  event->set_stream("features");
  event->set_statistic(1e-6);
  event->set_threshold(1e-3);
  event->set_observations(64);
  event->set_model_version(version);
  return report;
}

std::unique_ptr<DriftTracker> Make(DriftPolicyOptions options, int64_t population = 10) {
  auto tracker = DriftTracker::Create(std::move(options), population);
  EXPECT_TRUE(tracker.ok()) << tracker.status();
  return tracker.ok() ? std::move(*tracker) : nullptr;
}

TEST(DriftTrackerTest, StoresEventsWithClientRoundAndVersion) {
  auto tracker = Make({});
  ASSERT_TRUE(tracker->Record(Report("a", 3), 4, 5).ok());
  ASSERT_TRUE(tracker->Record(Report("b", 3), 4, 5).ok());
  ASSERT_TRUE(tracker->Record(Report("a", 5), 6, 5).ok());
  const auto events = tracker->events();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].client_id, "a");
  EXPECT_EQ(events[2].round, 6u);
  EXPECT_EQ(events[2].event.model_version(), 5u);
  EXPECT_THAT(tracker->ReportsByVersion(), ElementsAre(Pair(3u, 2), Pair(5u, 1)));
  EXPECT_EQ(tracker->ReportsInRound(4), 2);
  EXPECT_THAT(tracker->TakeJoinRequests(), ElementsAre("a", "b"));
  EXPECT_THAT(tracker->TakeJoinRequests(), ElementsAre());
}

TEST(DriftTrackerTest, MalformedReportsAreRefusedAndStoreNothing) {
  auto tracker = Make({});
  struct BadCase {
    std::function<void(v1::DriftReport&)> spoil;
    std::string message;
  };
  const std::vector<BadCase> cases = {
      {[](auto& r) { r.clear_client_id(); }, "no client id"},
      {[](auto& r) { r.clear_events(); }, "no events"},
      {[](auto& r) { r.mutable_events(0)->clear_detector(); }, "no detector or stream"},
      {[](auto& r) { r.mutable_events(0)->set_statistic(NAN); }, "non-finite"},
      {[](auto& r) { r.mutable_events(0)->set_threshold(INFINITY); }, "non-finite"},
      {[](auto& r) { r.mutable_events(0)->set_model_version(2); }, "is for model version 2"},
      {[](auto& r) {
         r.set_model_version(9);
         r.mutable_events(0)->set_model_version(9);
       },
       "newer than the latest published (5)"},
      {[](auto& r) {
         for (int i = 0; i < 64; ++i) *r.add_events() = r.events(0);
       },
       "65 events"},
  };
  for (const BadCase& c : cases) {
    v1::DriftReport report = Report("a", 3);
    c.spoil(report);
    EXPECT_THAT(tracker->Record(report, 4, 5),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
  EXPECT_TRUE(tracker->events().empty());
  EXPECT_TRUE(tracker->TakeJoinRequests().empty());
  ASSERT_TRUE(tracker->Record(Report("a", 3), 4, 5).ok());
  EXPECT_THAT(tracker->Record(Report("a", 3), 4, 5),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("already reported")));
  EXPECT_EQ(tracker->events().size(), 1u);
}

TEST(DriftTrackerTest, ExtraRoundWhenTheShareInTheWindowPassesTheThreshold) {
  DriftPolicyOptions options;
  options.reaction = "extra-round";
  options.window_rounds = 2;
  options.threshold = 0.3;
  options.cooldown_rounds = 3;
  auto tracker = Make(options);
  ASSERT_TRUE(tracker->Record(Report("a", 1), 1, 1).ok());
  ASSERT_TRUE(tracker->Record(Report("b", 1), 1, 1).ok());
  DriftPolicyDecision r1 = tracker->Evaluate(1);
  EXPECT_EQ(r1.reporting_clients, 2);
  EXPECT_DOUBLE_EQ(r1.share, 0.2);
  EXPECT_FALSE(r1.alert);
  // Round 2: a third client; the window (rounds 1-2) holds three of ten.
  ASSERT_TRUE(tracker->Record(Report("c", 1), 2, 1).ok());
  ASSERT_TRUE(tracker->Record(Report("a", 1), 2, 1).ok());  // counted once
  DriftPolicyDecision r2 = tracker->Evaluate(2);
  EXPECT_EQ(r2.reporting_clients, 3);
  EXPECT_TRUE(r2.alert);
  EXPECT_TRUE(r2.extra_round);
  // Still above the threshold, but within the cooldown.
  ASSERT_TRUE(tracker->Record(Report("d", 2), 3, 2).ok());
  ASSERT_TRUE(tracker->Record(Report("e", 2), 3, 2).ok());
  ASSERT_TRUE(tracker->Record(Report("f", 2), 3, 2).ok());
  EXPECT_FALSE(tracker->Evaluate(3).extra_round);
  ASSERT_TRUE(tracker->Record(Report("g", 2), 5, 2).ok());
  ASSERT_TRUE(tracker->Record(Report("h", 2), 5, 2).ok());
  ASSERT_TRUE(tracker->Record(Report("i", 2), 5, 2).ok());
  EXPECT_TRUE(tracker->Evaluate(5).extra_round);
  // Round 3's reporters have left the window by round 6.
  EXPECT_EQ(tracker->Evaluate(6).reporting_clients, 3);
}

TEST(DriftTrackerTest, AlertAndNoneDoNotAskForRounds) {
  for (const std::string reaction : {"alert", "none"}) {
    DriftPolicyOptions options;
    options.reaction = reaction;
    options.threshold = 0.1;
    auto tracker = Make(options);
    ASSERT_TRUE(tracker->Record(Report("a", 1), 1, 1).ok());
    DriftPolicyDecision d = tracker->Evaluate(1);
    EXPECT_EQ(d.alert, reaction == "alert");
    EXPECT_FALSE(d.extra_round);
  }
}

TEST(DriftTrackerTest, EachBadOptionIsNamed) {
  struct BadCase {
    std::function<void(DriftPolicyOptions&)> spoil;
    std::string field;
  };
  const std::vector<BadCase> cases = {
      {[](auto& o) { o.reaction = "retrain"; }, "reaction"},
      {[](auto& o) { o.window_rounds = 0; }, "window_rounds"},
      {[](auto& o) { o.threshold = 0; }, "threshold"},
      {[](auto& o) { o.threshold = 1.5; }, "threshold"},
      {[](auto& o) { o.cooldown_rounds = -1; }, "cooldown_rounds"},
      {[](auto& o) { o.max_events_per_report = 0; }, "max_events_per_report"},
  };
  for (const BadCase& c : cases) {
    DriftPolicyOptions options;
    c.spoil(options);
    EXPECT_THAT(DriftTracker::Create(options, 10),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
  EXPECT_THAT(DriftTracker::Create({}, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("population")));
}

}  // namespace
}  // namespace fedge::aggregator
