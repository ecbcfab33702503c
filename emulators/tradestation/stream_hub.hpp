#pragma once
// Open HTTP streams and the frames waiting for each. The venue side publishes newline-terminated
// JSON lines; each stream connection's thread takes them out with next(), which blocks until
// there is something to write or the idle interval has passed (time for a heartbeat).
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace backstop::tradestation_emulator {

enum class StreamKind { orders, positions, quotes };

struct StreamFilter {
  StreamKind kind = StreamKind::orders;
  std::set<std::string> accounts;   // orders, positions
  std::set<std::string> order_ids;  // orders by id; empty = all
  std::set<std::string> symbols;    // quotes
};

struct Subscriber {
  using Clock = std::chrono::steady_clock;
  StreamFilter filter;
  std::deque<std::string> queue;  // lines, each ending in '\n'
  bool goaway = false;            // send GoAway, then end the response
  bool finish = false;            // end the response once the queue is written
  bool kill = false;              // drop the connection without a word
  bool stalled = false;
  Clock::time_point stalled_until;
  Clock::time_point last_write = Clock::now();
  std::int64_t heartbeats = 0;
};

class StreamHub {
 public:
  struct Step {
    enum class Kind { lines, idle, goaway, finish, close } kind = Kind::idle;
    std::vector<std::string> lines;
  };

  std::shared_ptr<Subscriber> subscribe(StreamFilter filter, std::vector<std::string> initial_lines,
                                        bool finish_after_initial = false);
  void unsubscribe(const std::shared_ptr<Subscriber>& s);
  // Queues a line on every stream of `kind` whose filter matches; empty keys match anything.
  void publish(StreamKind kind, const std::string& account, const std::string& order_id,
               const std::string& symbol, const std::string& line);

  // Blocks until the stream has lines to write, is told to stop, or has been idle for `idle`.
  Step next(Subscriber& s, std::chrono::milliseconds idle);
  // Silences a stream until `until`; wait_stalled blocks until then (or stop), after which the
  // connection is dropped.
  void stall(Subscriber& s, Subscriber::Clock::time_point until);
  void wait_stalled(Subscriber& s);
  void wrote(Subscriber& s);

  void goaway_all();
  void disconnect_all();
  void stop();  // every stream sends GoAway and ends; new subscribers end at once
  std::size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::list<std::shared_ptr<Subscriber>> subscribers_;
  bool stopping_ = false;
};

}  // namespace backstop::tradestation_emulator
