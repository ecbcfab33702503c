#include "brokers/net/loop_io.hpp"

#include <algorithm>
#include <atomic>

#include "brokers/net/detail/asio.hpp"

namespace backstop::net {

using namespace detail;

struct LoopIo::Impl final : LoopWaiter {
  std::size_t poll() override { return ioc.poll(); }

  void wait_for(std::chrono::nanoseconds max) override {
    // Bounded: run_one_for() adds `max` to steady_clock::now(), which a "forever" would overflow.
    // The loop waits again if nothing happened.
    max = std::min<std::chrono::nanoseconds>(max, std::chrono::hours(1));
    // At least one handler (a network completion, or wake()'s), then whatever else is ready.
    if (ioc.run_one_for(max) > 0) ioc.poll();
  }

  void wake() override {
    // One wake-up handler at a time: posts from other threads in a burst queue one, not many.
    if (wake_pending.exchange(true, std::memory_order_acq_rel)) return;
    asio::post(ioc, [this] { wake_pending.store(false, std::memory_order_release); });
  }

  asio::io_context ioc{1};
  // Without outstanding work run_one_for() would return at once: the loop would spin.
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(ioc);
  std::atomic<bool> wake_pending{false};
};

LoopIo::LoopIo(EventLoop& loop) : loop_(loop), impl_(std::make_unique<Impl>()) { loop_.set_waiter(impl_.get()); }

LoopIo::~LoopIo() { loop_.set_waiter(nullptr); }

namespace detail {
asio::io_context& context_of(LoopIo& io) { return io.impl().ioc; }
}  // namespace detail

}  // namespace backstop::net
