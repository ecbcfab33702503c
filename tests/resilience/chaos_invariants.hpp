#pragma once
// The invariants a chaos run must keep, checked from the emulators' own records against the
// journal (never from Backstop's own account of itself alone):
//   no_order_lost      every order request an emulator received with this run's client order id
//                      prefix is journaled (for that broker); every journaled order that reached
//                      pending/submitted is placed at its emulator, or resolved `failed` and the
//                      emulator never placed it; nothing is left pre_sent/pending at the end.
//   none_sent_twice    no client order id placed twice at one emulator, or at both; no resend
//                      refused by an emulator as a duplicate.
//   ghost_detected     every `ghost_stop_crossed` record of an emulator (TradeStation: its
//                      client_order_id is the OrderConfirmID; IBKR: its order_id is the gateway
//                      order id, mapped to the cOID through the log's "executed" entries) has a
//                      journal event "ghost_stop" for that client order id (a) whenever the
//                      journal has a "stop_crossed" event for it (Backstop saw the crossing; a
//                      restart must not make it forget), unless our own cancel ended the stop
//                      within the grace period or its entry's fill never reached the journal;
//                      (b) otherwise whenever Backstop could have seen it: some quote the
//                      driver posted went through the stop
//                      after the stop was acknowledged and its entry's fill journaled, while one
//                      router process was ready and stayed up for the grace period plus 6 s, the
//                      stop's broker had no feed-affecting fault (driver episode or emulator
//                      record) from 4 s before to the end of that window, and the journal does
//                      not show the stop ended before the grace period ran out.
//   positions          each emulator's own position equals what the journal's fills at that
//                      broker imply, and is flat after --flatten-on-exit.
//   journal_consistent `backstop orders --json` parses; every order's applied transitions form a
//                      chain from pre_sent that the lifecycle table allows and ends in its state;
//                      fills add up to its filled quantity.
//   processes          no router died by a signal the driver did not send; the final run exits 0.
//   local_stops        (protection `local` runs) every held stop crossed while a restarted router's
//                      recovery ran ("local_stop_crossed_during_recovery") is released afterwards
//                      ("local_stop_fired"); no order is left held after --flatten-on-exit; the
//                      guard never gives up sending an exit that ended unfilled.
#include <string>
#include <vector>

#include "chaos_harness.hpp"

namespace backstop::chaos {

struct Finding {
  std::string invariant;
  std::string detail;
};

struct Verdict {
  std::vector<Finding> violations;
  std::vector<std::string> notes;  // facts worth printing that break no invariant
  std::string summary;             // one line: what the run did
  bool passed() const { return violations.empty(); }
};

Verdict check_invariants(const RunRecord& run);

}  // namespace backstop::chaos
