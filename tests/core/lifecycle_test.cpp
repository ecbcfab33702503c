#include "core/lifecycle.hpp"

#include <gtest/gtest.h>

using namespace backstop;
using S = OrderState;

namespace {
const std::vector<S> kAll = {S::pre_sent, S::pending, S::submitted, S::partially_filled, S::filled,
                             S::pending_cancel, S::cancelled, S::rejected, S::failed, S::held};
}

TEST(Lifecycle, EveryLegalTransitionApplies) {
  const std::vector<std::pair<S, S>> legal = {
      {S::pre_sent, S::pending}, {S::pre_sent, S::submitted}, {S::pre_sent, S::partially_filled},
      {S::pre_sent, S::filled}, {S::pre_sent, S::cancelled}, {S::pre_sent, S::rejected}, {S::pre_sent, S::failed},
      {S::pending, S::submitted}, {S::pending, S::partially_filled}, {S::pending, S::filled},
      {S::pending, S::pending_cancel}, {S::pending, S::cancelled}, {S::pending, S::rejected}, {S::pending, S::failed},
      {S::submitted, S::partially_filled}, {S::submitted, S::filled}, {S::submitted, S::pending_cancel},
      {S::submitted, S::cancelled}, {S::submitted, S::rejected},
      {S::partially_filled, S::partially_filled}, {S::partially_filled, S::filled},
      {S::partially_filled, S::pending_cancel}, {S::partially_filled, S::cancelled},
      {S::pending_cancel, S::cancelled}, {S::pending_cancel, S::filled}, {S::pending_cancel, S::partially_filled},
      {S::pending_cancel, S::submitted},
      // Held by Backstop (protection `local`): sent again through pre_sent when it triggers.
      {S::pre_sent, S::held}, {S::held, S::pre_sent}, {S::held, S::cancelled}, {S::held, S::failed}};
  std::size_t count = 0;
  for (S from : kAll)
    for (S to : kAll) {
      const bool expected = std::find(legal.begin(), legal.end(), std::make_pair(from, to)) != legal.end();
      EXPECT_EQ(is_legal_transition(from, to), expected) << to_string(from) << " -> " << to_string(to);
      if (!expected) continue;
      ++count;
      OrderRecord o;
      o.spec.client_order_id = "X";
      o.state = from;
      const auto ev = o.transition(to, 1000, "test");
      EXPECT_TRUE(ev.applied);
      EXPECT_EQ(o.state, to);
      EXPECT_EQ(o.time_of(to), 1000);
    }
  EXPECT_EQ(count, legal.size());
}

TEST(Lifecycle, IllegalTransitionIsRefusedAndReported) {
  for (auto [from, to] : std::vector<std::pair<S, S>>{{S::filled, S::submitted}, {S::cancelled, S::filled},
                                                      {S::rejected, S::submitted}, {S::submitted, S::pending},
                                                      {S::submitted, S::pre_sent}, {S::failed, S::pending},
                                                      {S::submitted, S::failed}, {S::filled, S::cancelled}}) {
    OrderRecord o;
    o.spec.client_order_id = "X";
    o.state = from;
    const auto ev = o.transition(to, 5, "late report");
    EXPECT_FALSE(ev.applied) << to_string(from) << " -> " << to_string(to);
    EXPECT_EQ(o.state, from) << "state must not change";
    EXPECT_EQ(ev.from, from);
    EXPECT_EQ(ev.to, to);
    EXPECT_EQ(ev.reason, "late report");
    EXPECT_EQ(o.time_of(to), 0);
  }
}

TEST(Lifecycle, TerminalStatesHaveNoExit) {
  for (S t : {S::filled, S::cancelled, S::rejected, S::failed}) {
    EXPECT_TRUE(is_terminal(t));
    for (S to : kAll) EXPECT_FALSE(is_legal_transition(t, to));
  }
}

TEST(Lifecycle, HeldIsOpenButNotWorkingAtABroker) {
  EXPECT_FALSE(is_terminal(S::held));
  EXPECT_FALSE(is_working(S::held));
  EXPECT_EQ(kAll.size(), kOrderStateCount);
}

TEST(Lifecycle, StateNamesRoundTrip) {
  for (S s : kAll) EXPECT_EQ(order_state_from_string(to_string(s)), s);
  EXPECT_EQ(timestamp_name(S::pending), "sent_at");
  EXPECT_EQ(timestamp_name(S::filled), "filled_at");
  EXPECT_EQ(timestamp_name(S::held), "held_at");
  EXPECT_FALSE(order_state_from_string("working").has_value());
}

TEST(Lifecycle, FillsAverageExactly) {
  OrderRecord o;
  o.spec.quantity = 100;
  o.add_fill(81, Price::parse("233.10"));
  o.add_fill(19, Price::parse("233.09"));
  EXPECT_EQ(o.filled_quantity, 100);
  EXPECT_EQ(o.remaining_quantity(), 0);
  EXPECT_EQ(o.average_fill_price, Price::parse("233.0981"));
}
