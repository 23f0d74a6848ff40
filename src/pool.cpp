// pool.cpp — Pool's non-template members (the engine does the work: src/engine.cpp).
#include "mproc/pool.hpp"

#include <exception>

namespace mproc {

Pool::Pool(PoolOptions options) : uncaught_(std::uncaught_exceptions()) {
  detail::EngineOptions engine_options;
  engine_options.workers = options.processes;
  engine_options.start = options.start;
  engine_options.worker_name = "PoolWorker";
  engine_options.initializer = options.initializer.encoded();
  engine_options.max_tasks_per_child = options.maxtasksperchild;
  engine_options.task_timeout = options.task_timeout;
  engine_options.max_retries = options.max_retries;
  engine_options.memory_limit = options.memory_limit;
  if (options.max_retries < 0) throw UsageError("PoolOptions::max_retries must be >= 0");
  if (options.task_timeout && options.task_timeout->count() <= 0) {
    throw UsageError("PoolOptions::task_timeout must be positive");
  }
  engine_ = std::make_unique<detail::Engine>(std::move(engine_options));
}

Pool::~Pool() {
  if (!engine_) return;  // moved-from
  if (std::uncaught_exceptions() > uncaught_) {
    engine_->terminate();
    return;
  }
  try {
    engine_->close();
    engine_->join();
  } catch (...) {
    engine_->terminate();
  }
}

detail::Engine& Pool::engine() const {
  if (!engine_) throw UsageError("Pool: moved-from");
  return *engine_;
}

void Pool::close() {
  engine().close();
}
void Pool::join() {
  engine().join();
}
void Pool::terminate() noexcept {
  if (engine_) engine_->terminate();
}
std::size_t Pool::processes() const noexcept {
  return engine_ ? engine_->worker_count() : 0;
}

}  // namespace mproc
