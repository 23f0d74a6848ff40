#include "manager_objects.hpp"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "mproc/detail/archive.hpp"
#include "mproc/detail/manager_calls.hpp"
#include "mproc/errors.hpp"

namespace mproc::detail::manager {

namespace {

using Bytes = std::string;
using Clock = std::chrono::steady_clock;

/// How often a waiting request checks that its client is still there.
constexpr std::chrono::milliseconds kWaitSlice{50};

Bytes rest(Decoder& in) {
  const auto bytes = in.read_bytes(in.remaining());
  return Bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

Bytes sized(Decoder& in) {
  const std::uint64_t n = get_u64_le(in);
  if (n > in.remaining()) throw_truncated(static_cast<std::size_t>(n), in.remaining());
  const auto bytes = in.read_bytes(static_cast<std::size_t>(n));
  return Bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void put_u8(Encoder& out, std::uint8_t v) {
  out.write_bytes(&v, 1);
}

void put_bytes(Encoder& out, const Bytes& b) {
  out.write_bytes(b.data(), b.size());
}

void put_sized(Encoder& out, const Bytes& b) {
  put_u64_le(out, b.size());
  put_bytes(out, b);
}

[[noreturn]] void wrong_op(Op op, const char* kind) {
  throw ProtocolError("mproc::Manager: operation " + std::to_string(static_cast<int>(op)) +
                      " is not an operation of a " + kind);
}

/// Waits on `cv` until `ready()`, the deadline, or the session's end (Abandoned).
template <class Ready>
bool wait_until(std::unique_lock<std::mutex>& lock, std::condition_variable& cv,
                std::optional<std::chrono::nanoseconds> timeout, Session& session, Ready ready) {
  // A plain time_point with a flag, not std::optional: g++ 12 under -fsanitize=thread
  // reports the optional's payload as maybe-uninitialized.
  const bool has_deadline = timeout.has_value();
  const Clock::time_point deadline = has_deadline ? Clock::now() + *timeout : Clock::time_point{};
  while (!ready()) {
    auto slice = std::chrono::duration_cast<Clock::duration>(kWaitSlice);
    if (has_deadline) {
      const auto left = deadline - Clock::now();
      if (left <= Clock::duration::zero()) return false;
      slice = std::min(slice, left);
    }
    cv.wait_for(lock, slice);
    if (!ready() && session.abandoned()) throw Abandoned{};
  }
  return true;
}

void check_stored(const Encoder& out) {
  if (!out.fds().empty()) {
    throw UsageError("mproc::Manager: the value holds a descriptor, which a manager cannot store");
  }
}

class DictServant final : public Servant {
 public:
  using Servant::Servant;

  void handle(Op op, Decoder& in, Encoder& out, Session& session) override {
    const std::lock_guard lock(mutex_);
    switch (op) {
      case Op::dict_set: {
        Bytes key = sized(in);
        map_.insert_or_assign(std::move(key), rest(in));
        return;
      }
      case Op::dict_get: {
        const auto it = map_.find(rest(in));
        put_u8(out, it != map_.end() ? 1 : 0);
        if (it != map_.end()) put_bytes(out, it->second);
        return;
      }
      case Op::dict_get_or: {
        const Bytes key = sized(in);
        const Bytes fallback = rest(in);
        const auto it = map_.find(key);
        put_bytes(out, it != map_.end() ? it->second : fallback);
        return;
      }
      case Op::dict_contains: put_u8(out, map_.contains(rest(in)) ? 1 : 0); return;
      case Op::dict_erase: put_u8(out, map_.erase(rest(in)) != 0 ? 1 : 0); return;
      case Op::dict_size: put_u64_le(out, map_.size()); return;
      case Op::dict_clear: map_.clear(); return;
      case Op::dict_items:
        put_u64_le(out, map_.size());
        for (const auto& [key, value] : map_) {
          put_sized(out, key);
          put_sized(out, value);
        }
        return;
      case Op::dict_update: {
        Bytes key = sized(in);
        const auto it = map_.find(key);
        ServerCall call;
        call.current = it != map_.end() ? &it->second : nullptr;
        call.function_pointers = session.same_user_peer;
        Encoder updated;
        {
          const ScopedServerCall scope(call);
          run_manager_call(in, updated);
        }
        check_stored(updated);
        Bytes value(reinterpret_cast<const char*>(updated.bytes().data()), updated.bytes().size());
        put_bytes(out, value);
        if (it != map_.end()) {
          it->second = std::move(value);
        } else {
          map_.emplace(std::move(key), std::move(value));
        }
        return;
      }
      default: wrong_op(op, "dict");
    }
  }

 private:
  std::mutex mutex_;
  std::unordered_map<Bytes, Bytes> map_;
};

class ListServant final : public Servant {
 public:
  using Servant::Servant;

  void handle(Op op, Decoder& in, Encoder& out, Session&) override {
    const std::lock_guard lock(mutex_);
    switch (op) {
      case Op::list_append: items_.push_back(rest(in)); return;
      case Op::list_at: put_bytes(out, items_.at(index(in))); return;
      case Op::list_set: {
        const std::size_t i = index(in);
        items_.at(i) = rest(in);
        return;
      }
      case Op::list_pop:
        if (items_.empty()) throw std::out_of_range("mproc::List::pop: the list is empty");
        put_bytes(out, items_.back());
        items_.pop_back();
        return;
      case Op::list_size: put_u64_le(out, items_.size()); return;
      case Op::list_clear: items_.clear(); return;
      case Op::list_to_vector:
        put_u64_le(out, items_.size());
        for (const Bytes& item : items_) put_sized(out, item);
        return;
      default: wrong_op(op, "list");
    }
  }

 private:
  std::size_t index(Decoder& in) const {
    const std::uint64_t i = get_u64_le(in);
    if (i >= items_.size()) {
      throw std::out_of_range("mproc::List: index " + std::to_string(i) +
                              " is out of range (size " + std::to_string(items_.size()) + ")");
    }
    return static_cast<std::size_t>(i);
  }

  std::mutex mutex_;
  std::vector<Bytes> items_;
};

class QueueServant final : public Servant {
 public:
  QueueServant(Kind kind, std::uint64_t type_a, std::uint64_t type_b, std::uint64_t maxsize)
      : Servant(kind, type_a, type_b), maxsize_(maxsize) {}

  void handle(Op op, Decoder& in, Encoder& out, Session& session) override {
    std::unique_lock lock(mutex_);
    switch (op) {
      case Op::queue_put: {
        const auto timeout = read_timeout(in);
        Bytes item = rest(in);
        const bool room = wait_until(lock, changed_, timeout, session,
                                     [this] { return maxsize_ == 0 || items_.size() < maxsize_; });
        if (room) {
          items_.push_back(std::move(item));
          changed_.notify_all();
        }
        put_u8(out, room ? 1 : 0);
        return;
      }
      case Op::queue_get: {
        const auto timeout = read_timeout(in);
        const bool ready =
            wait_until(lock, changed_, timeout, session, [this] { return !items_.empty(); });
        put_u8(out, ready ? 1 : 0);
        if (ready) {
          put_bytes(out, items_.front());
          items_.pop_front();
          changed_.notify_all();
        }
        return;
      }
      case Op::queue_size: put_u64_le(out, items_.size()); return;
      default: wrong_op(op, "queue");
    }
  }

 private:
  const std::uint64_t maxsize_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Bytes> items_;
};

class LockServant final : public Servant {
 public:
  using Servant::Servant;

  void handle(Op op, Decoder& in, Encoder& out, Session& session) override {
    std::unique_lock lock(mutex_);
    switch (op) {
      case Op::lock_acquire: {
        const auto timeout = read_timeout(in);
        if (owner_ == &session && timeout) {
          put_u8(out, 0);  // try_lock on a lock the caller holds: false, as mproc::Lock
          return;
        }
        if (owner_ == &session) {
          throw UsageError(
              "mproc::managed::Lock::lock: the calling thread already holds this lock (it is "
              "not recursive)");
        }
        const bool acquired =
            wait_until(lock, released_, timeout, session, [this] { return owner_ == nullptr; });
        if (acquired) {
          owner_ = &session;
          const bool known = std::any_of(
              session.holdings.begin(), session.holdings.end(),
              [this](const std::weak_ptr<Servant>& held) { return held.lock().get() == this; });
          if (!known) session.holdings.push_back(weak_from_this());
        }
        put_u8(out, acquired ? 1 : 0);
        return;
      }
      case Op::lock_release:
        if (owner_ != &session) {
          throw UsageError(
              "mproc::managed::Lock::unlock: the calling thread does not hold this lock");
        }
        owner_ = nullptr;
        released_.notify_one();
        return;
      case Op::lock_locked: put_u8(out, owner_ != nullptr ? 1 : 0); return;
      default: wrong_op(op, "lock");
    }
  }

  void session_ended(Session& session) noexcept override {
    const std::lock_guard lock(mutex_);
    if (owner_ == &session) {
      owner_ = nullptr;
      released_.notify_one();
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable released_;
  const Session* owner_ = nullptr;
};

class EventServant final : public Servant {
 public:
  using Servant::Servant;

  void handle(Op op, Decoder& in, Encoder& out, Session& session) override {
    std::unique_lock lock(mutex_);
    switch (op) {
      case Op::event_set:
        set_ = true;
        changed_.notify_all();
        return;
      case Op::event_clear: set_ = false; return;
      case Op::event_is_set: put_u8(out, set_ ? 1 : 0); return;
      case Op::event_wait: {
        const auto timeout = read_timeout(in);
        put_u8(out, wait_until(lock, changed_, timeout, session, [this] { return set_; }) ? 1 : 0);
        return;
      }
      default: wrong_op(op, "event");
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  bool set_ = false;
};

class ObjectServant final : public Servant {
 public:
  ObjectServant(std::uint64_t type, std::shared_ptr<void> object)
      : Servant(Kind::object, type, 0), object_(std::move(object)) {}

  void handle(Op op, Decoder& in, Encoder& out, Session& session) override {
    if (op != Op::object_call) wrong_op(op, "user object");
    const std::lock_guard lock(mutex_);
    ServerCall call;
    call.function_pointers = session.same_user_peer;
    call.object = object_.get();
    call.object_type = type_a;
    Encoder result;
    {
      const ScopedServerCall scope(call);
      run_manager_call(in, result);
    }
    check_stored(result);
    out.write_bytes(result.bytes().data(), result.bytes().size());
  }

 private:
  std::mutex mutex_;
  std::shared_ptr<void> object_;
};

}  // namespace

std::optional<std::chrono::nanoseconds> read_timeout(Decoder& in) {
  const auto raw = static_cast<std::int64_t>(get_u64_le(in));
  if (raw < 0) return std::nullopt;
  // Capped at ~146 years, so that the waits' now() + timeout cannot overflow.
  constexpr std::int64_t kLongest = std::int64_t{1} << 62;
  return std::chrono::nanoseconds(std::min(raw, kLongest));
}

std::shared_ptr<Servant> make_servant(Kind kind, std::uint64_t type_a, std::uint64_t type_b,
                                      std::uint64_t capacity) {
  switch (kind) {
    case Kind::dict: return std::make_shared<DictServant>(kind, type_a, type_b);
    case Kind::list: return std::make_shared<ListServant>(kind, type_a, type_b);
    case Kind::queue: return std::make_shared<QueueServant>(kind, type_a, type_b, capacity);
    case Kind::lock: return std::make_shared<LockServant>(kind, type_a, type_b);
    case Kind::event: return std::make_shared<EventServant>(kind, type_a, type_b);
    case Kind::object: break;
  }
  throw ProtocolError("mproc::Manager: unknown object kind " +
                      std::to_string(static_cast<int>(kind)));
}

std::shared_ptr<Servant> make_object(std::uint64_t type, Decoder& factory) {
  ServerCall call;
  Encoder unused;
  {
    const ScopedServerCall scope(call);
    run_manager_call(factory, unused);
  }
  if (call.created == nullptr || call.created_type != type) {
    throw ProtocolError("mproc::Manager: the object factory did not make the requested type");
  }
  return std::make_shared<ObjectServant>(type, std::move(call.created));
}

}  // namespace mproc::detail::manager
