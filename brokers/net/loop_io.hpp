#pragma once
// Network I/O on the event loop's own thread. DESIGN.md's runtime shape is one io_context thread
// that owns routing state, with the adapters asynchronous on it; this is that io_context. While
// it exists, the loop waits in it when idle (it is the loop's LoopWaiter), so a request is
// written from the loop's thread and its answer read there: no hand-off to a network thread and
// back, which on a 2-core VM cost more than the rest of the round trip above a bare client
// (bench/PERFORMANCE.md).
//
//   EventLoop loop(clock);
//   net::LoopIo io(loop);                     // before any client that uses it
//   net::HttpClient::Options o;
//   o.loop_io = &io;                          // requests run on loop's thread
//   o.post = [&loop](auto f) { loop.post(std::move(f)); };   // answers arrive as loop tasks
//
// Destroy every client that uses it first. Loop thread only, except what EventLoop says of
// post() and stop().
#include <memory>

#include "core/event_loop.hpp"

namespace backstop::net {

class LoopIo {
 public:
  explicit LoopIo(EventLoop& loop);  // installs itself as the loop's waiter
  ~LoopIo();                         // uninstalls itself
  LoopIo(const LoopIo&) = delete;
  LoopIo& operator=(const LoopIo&) = delete;

  EventLoop& loop() { return loop_; }

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  EventLoop& loop_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace backstop::net
