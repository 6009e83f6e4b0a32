#include "fedge/aggregator/event_log.h"

#include <gtest/gtest.h>

namespace fedge::aggregator {
namespace {

TEST(EventLogTest, SinceReturnsOnlyNewerEventsOldestFirst) {
  EventLog log(10);
  const uint64_t first = log.Record("info", "round_closed", "round 1 closed", {{"round", "1"}});
  log.Record("error", "round_failed", "round 2 failed", {{"round", "2"}});
  log.Record("warning", "alert", "dropout spike");
  EXPECT_EQ(first, 1u);
  EXPECT_EQ(log.last_sequence(), 3u);

  std::vector<FleetEvent> all = log.Since(0, 100);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].kind, "round_closed");
  EXPECT_EQ(all[0].fields.at("round"), "1");
  EXPECT_EQ(all[2].sequence, 3u);
  EXPECT_GT(all[0].time_ms, 0);

  std::vector<FleetEvent> newer = log.Since(2, 100);
  ASSERT_EQ(newer.size(), 1u);
  EXPECT_EQ(newer[0].message, "dropout spike");
  EXPECT_TRUE(log.Since(3, 100).empty());
}

TEST(EventLogTest, LimitKeepsTheNewest) {
  EventLog log(10);
  for (int i = 0; i < 5; ++i) log.Record("info", "k", std::to_string(i));
  std::vector<FleetEvent> two = log.Since(0, 2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].message, "3");
  EXPECT_EQ(two[1].message, "4");
}

TEST(EventLogTest, CapacityDropsTheOldestButCountsEverything) {
  EventLog log(3);
  for (int i = 0; i < 7; ++i) log.Record("info", i % 2 == 0 ? "even" : "odd", std::to_string(i));
  std::vector<FleetEvent> kept = log.Since(0, 100);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept.front().sequence, 5u);
  EXPECT_EQ(log.Since(5, 100).size(), 2u);
  EXPECT_EQ(log.CountsByKind().at("even"), 4u);
  EXPECT_EQ(log.CountsByKind().at("odd"), 3u);
}

}  // namespace
}  // namespace fedge::aggregator
