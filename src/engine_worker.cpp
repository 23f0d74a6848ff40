// engine_worker.cpp — the loop a pool worker process runs (see engine_protocol.hpp for the
// frames). One task at a time, in the order received; each result is sent as soon as the call
// returns, so a crash never loses a finished task's result.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>

#include "detail/sys.hpp"
#include "engine_worker.hpp"
#include "mproc/detail/callable.hpp"
#include "mproc/detail/remote_exception.hpp"
#include "mproc/log.hpp"
#include "process_state.hpp"
#include "worker_group.hpp"

namespace mproc::detail {

namespace {

namespace proto = engine_protocol;

/// Thrown inside the loop when the initializer failed (already reported to the parent).
struct InitializerFailed {};

thread_local Encoder* t_result = nullptr;
proto::Slot* g_slot = nullptr;

/// The output segments this worker has mapped, most recent first (worker::map_output). Two:
/// a map in flight and the next one, or two maps running side by side.
struct MappedOutput {
  dev_t dev = 0;
  ino_t ino = 0;
  SharedSegment segment;
};
std::array<MappedOutput, 2> g_outputs;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class WorkerLoop {
 public:
  WorkerLoop(Connection conn, proto::Slot& slot, const proto::WorkerSettings& settings)
      : conn_(std::move(conn)), slot_(slot), settings_(settings) {}

  /// Returns when told to stop, when the parent is gone, or after max_tasks tasks.
  void run() {
    if (settings_.has_initializer == 0) slot_.ready.store(1, std::memory_order_release);
    for (;;) {
      ReceivedFrame frame;
      try {
        frame = conn_.recv_frame();
      } catch (const ConnectionClosed&) {
        return;  // the parent closed the pool or died
      }
      const std::span<const std::byte> bytes(frame.bytes);
      if (bytes.size() < proto::header_size) throw ProtocolError("pool worker: short frame");
      const auto type = static_cast<proto::ToWorker>(bytes[0]);
      switch (type) {
        case proto::ToWorker::init:
          run_initializer(bytes.subspan(proto::header_size), frame.fds);
          break;
        case proto::ToWorker::task: {
          std::uint64_t id;
          std::memcpy(&id, bytes.data() + 8, 8);
          if (!run_task(id, bytes.subspan(proto::header_size), frame.fds)) return;
          break;
        }
        case proto::ToWorker::batch: {
          std::uint32_t count;
          std::memcpy(&count, bytes.data() + 4, 4);
          std::size_t pos = proto::header_size;
          for (std::uint32_t i = 0; i < count; ++i) {
            std::uint64_t id, size;
            if (bytes.size() - pos < 16) throw ProtocolError("pool worker: truncated batch");
            std::memcpy(&id, bytes.data() + pos, 8);
            std::memcpy(&size, bytes.data() + pos + 8, 8);
            pos += 16;
            if (size > bytes.size() - pos) throw ProtocolError("pool worker: truncated batch");
            if (!run_task(id, bytes.subspan(pos, size), {})) return;
            pos += size;
          }
          break;
        }
        case proto::ToWorker::stop: return;
        default: throw ProtocolError("pool worker: unknown frame type");
      }
    }
  }

 private:
  void run_initializer(std::span<const std::byte> call, std::vector<UniqueFd>& fds) {
    try {
      TaskScope scope;
      Decoder in(call, fds);
      run_call(in, nullptr);
    } catch (...) {
      Encoder out;
      std::byte header[proto::header_size]{};
      header[0] = std::byte{static_cast<std::uint8_t>(proto::ToParent::init_failed)};
      out.write_bytes(header, sizeof header);
      encode_exception(out, std::current_exception());
      try {
        conn_.send_frame(out.bytes());
      } catch (const Error&) {
      }
      // A worker whose initializer failed must not run tasks: the pool is broken.
      throw InitializerFailed{};
    }
    slot_.ready.store(1, std::memory_order_release);
  }

  /// Runs one task and sends its result; false when this worker must now exit.
  bool run_task(std::uint64_t id, std::span<const std::byte> call, std::span<UniqueFd> fds) {
    Encoder& out = result_;
    out.clear();
    std::byte header[proto::result_header_size]{};
    out.write_bytes(header, sizeof header);
    const Encoder::Mark body = out.mark();

    const std::int64_t started = now_ns();
    slot_.item.store(0, std::memory_order_relaxed);
    slot_.started_ns.store(started, std::memory_order_relaxed);
    slot_.task_id.store(id, std::memory_order_release);
    proto::Outcome outcome = proto::Outcome::value;
    try {
      TaskScope scope;
      t_result = &out;
      Decoder in(call, fds);
      run_call(in, &out);
      t_result = nullptr;
    } catch (...) {
      t_result = nullptr;
      out.rewind(body);
      release_retained_fds();
      outcome = proto::Outcome::exception;
      encode_exception(out, std::current_exception());
    }
    const std::int64_t elapsed = now_ns() - started;

    std::byte* h = out.bytes().data();
    h[0] = std::byte{static_cast<std::uint8_t>(proto::ToParent::result)};
    h[1] = std::byte{static_cast<std::uint8_t>(outcome)};
    std::memcpy(h + 8, &id, 8);
    std::memcpy(h + 16, &elapsed, 8);
    bool parent_alive = true;
    try {
      conn_.send_frame(out.bytes(), out.fds());
    } catch (const ConnectionClosed&) {
      parent_alive = false;
    }
    release_retained_fds();
    slot_.task_id.store(0, std::memory_order_release);
    if (!parent_alive) return false;
    ++done_;
    return settings_.max_tasks == 0 || done_ < settings_.max_tasks;
  }

  Connection conn_;
  proto::Slot& slot_;
  proto::WorkerSettings settings_;
  Encoder result_;
  std::uint64_t done_ = 0;
};

}  // namespace

namespace worker {

Encoder* result_encoder() noexcept {
  return t_result;
}

void set_item(std::uint64_t k) noexcept {
  if (g_slot != nullptr) g_slot->item.store(k, std::memory_order_release);
}

std::atomic<std::uint64_t>* item_slot() noexcept {
  return g_slot != nullptr ? &g_slot->item : nullptr;
}

SharedSegment map_output(UniqueFd fd) {
  struct stat st {};
  sys::check(::fstat(fd.get(), &st), "fstat()");
  for (std::size_t i = 0; i < g_outputs.size(); ++i) {
    // A segment keeps its inode (and its size) for its whole life: same inode, same memory.
    if (g_outputs[i].segment && g_outputs[i].dev == st.st_dev && g_outputs[i].ino == st.st_ino) {
      std::rotate(g_outputs.begin(), g_outputs.begin() + static_cast<std::ptrdiff_t>(i),
                  g_outputs.begin() + static_cast<std::ptrdiff_t>(i) + 1);
      return g_outputs[0].segment;  // `fd` is closed on return: the mapping stays
    }
  }
  SharedSegment segment = SharedSegment::attach(std::move(fd));
  std::move_backward(g_outputs.begin(), g_outputs.end() - 1, g_outputs.end());
  g_outputs[0] = MappedOutput{st.st_dev, st.st_ino, segment};
  return segment;
}

}  // namespace worker

void pool_worker_main(Connection conn, SharedSegment slots,
                      engine_protocol::WorkerSettings settings, OwnerLifeline owner) {
  // Ctrl-C goes to the whole foreground process group: the parent decides what it means, and
  // workers never print tracebacks of their own (PITFALLS).
  sys::ignore_signal(SIGINT);
  worker_group::lead(owner.fd);  // a task's own children die with this worker (worker_group.hpp)
  if (settings.memory_limit != 0) sys::limit_address_space(settings.memory_limit);
  if (slots.size() < (settings.slot + 1) * sizeof(proto::Slot)) {
    throw ProtocolError("pool worker: slot index out of range");
  }
  auto* slot = static_cast<proto::Slot*>(slots.data()) + settings.slot;
  g_slot = slot;
  WorkerLoop loop(std::move(conn), *slot, settings);
  try {
    loop.run();
  } catch (const InitializerFailed&) {
    // Reported to the parent already: exit quietly, without the "uncaught" line.
    flush_standard_streams();
    ::_exit(1);
  }
}

}  // namespace mproc::detail

void mproc::handle_codec<mproc::detail::OwnerLifeline>::encode(
    Encoder& out, const detail::OwnerLifeline& lifeline) {
  const std::uint32_t index = out.attach_fd(lifeline.fd);
  out.write_bytes(&index, sizeof index);
}

mproc::detail::OwnerLifeline mproc::handle_codec<mproc::detail::OwnerLifeline>::decode(
    Decoder& in) {
  std::uint32_t index = 0;
  in.read_bytes(&index, sizeof index);
  return detail::OwnerLifeline{in.take_fd(index).release()};
}
