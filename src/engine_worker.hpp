// engine_worker.hpp — the pool worker's entry point (internal to src/engine*.cpp).
#pragma once

#include "engine_protocol.hpp"
#include "mproc/detail/shared_segment.hpp"
#include "mproc/pipe.hpp"

namespace mproc::detail {

/// A descriptor of the pool owner's lifeline read end (lifeline.hpp), handed to each worker so
/// that it can arm the kernel to SIGKILL its process group when the owner dies. Not owning:
/// the engine owns the descriptor; a worker closes its copy once armed.
struct OwnerLifeline {
  int fd = -1;
};

/// The target of every pool worker Process: serves tasks from `conn` until told to stop, the
/// parent goes away, or settings.max_tasks tasks are done. A function pointer, so workers start
/// the same way under fork, forkserver and spawn.
void pool_worker_main(Connection conn, SharedSegment slots,
                      engine_protocol::WorkerSettings settings, OwnerLifeline owner);

}  // namespace mproc::detail

template <>
struct mproc::handle_codec<mproc::detail::OwnerLifeline> {
  static void encode(Encoder& out, const detail::OwnerLifeline& lifeline);
  static detail::OwnerLifeline decode(Decoder& in);
};
