#pragma once
// Callbacks that outlive their object. A component that hands a callback capturing `this` to the
// event loop (a timer, a posted task) or to another component (an OrderManager listener, a
// broker's reply, a venue's listener) cannot take it back when it is destroyed, and whatever
// holds it may run it later: a use after free. Wrapping such callbacks with the component's
// Lifetime makes them do nothing once the component is gone. Everything runs on the loop's
// thread, so a plain weak pointer suffices.
//
// Found twice by AddressSanitizer before this was shared (OrderManager's journal continuation,
// StopGuard's verification timer); every component that schedules work capturing `this` holds
// one.
#include <memory>
#include <utility>

namespace backstop {

class Lifetime {
 public:
  Lifetime() = default;
  // Each object has its own: a copy must not share (or end) the original's.
  Lifetime(const Lifetime&) = delete;
  Lifetime& operator=(const Lifetime&) = delete;

  // `f`, called with any arguments, while the owner of this Lifetime exists; nothing after.
  template <typename F>
  auto while_alive(F f) const {
    return [alive = std::weak_ptr<const int>(token_), f = std::move(f)](auto&&... args) mutable {
      if (!alive.expired()) f(std::forward<decltype(args)>(args)...);
    };
  }

 private:
  std::shared_ptr<const int> token_ = std::make_shared<const int>(0);
};

}  // namespace backstop
