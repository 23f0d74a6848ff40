// engine_worker.hpp — the pool worker's entry point (internal to src/engine*.cpp).
#pragma once

#include "engine_protocol.hpp"
#include "mproc/detail/shared_segment.hpp"
#include "mproc/pipe.hpp"

namespace mproc::detail {

/// The target of every pool worker Process: serves tasks from `conn` until told to stop, the
/// parent goes away, or settings.max_tasks tasks are done. A function pointer, so workers start
/// the same way under fork, forkserver and spawn.
void pool_worker_main(Connection conn, SharedSegment slots,
                      engine_protocol::WorkerSettings settings);

}  // namespace mproc::detail
