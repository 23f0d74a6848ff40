// executor.cpp — ProcessPoolExecutor's non-template members (the engine: src/engine.cpp).
#include "mproc/executor.hpp"

#include <exception>

namespace mproc {

ProcessPoolExecutor::ProcessPoolExecutor(ExecutorOptions options)
    : uncaught_(std::uncaught_exceptions()) {
  if (options.max_retries < 0) throw UsageError("ExecutorOptions::max_retries must be >= 0");
  if (options.task_timeout && options.task_timeout->count() <= 0) {
    throw UsageError("ExecutorOptions::task_timeout must be positive");
  }
  detail::EngineOptions engine_options;
  engine_options.workers = options.max_workers;
  engine_options.start = options.start;
  engine_options.worker_name = "ProcessPoolWorker";
  engine_options.initializer = options.initializer.encoded();
  engine_options.max_tasks_per_child = options.max_tasks_per_child;
  engine_options.task_timeout = options.task_timeout;
  engine_options.max_retries = options.max_retries;
  engine_options.memory_limit = options.memory_limit;
  engine_ = std::make_unique<detail::Engine>(std::move(engine_options));
}

ProcessPoolExecutor::~ProcessPoolExecutor() {
  if (!engine_) return;
  try {
    shutdown(/*wait=*/true, /*cancel_futures=*/std::uncaught_exceptions() > uncaught_);
  } catch (...) {
    engine_->terminate();
  }
}

detail::Engine& ProcessPoolExecutor::engine() const {
  if (!engine_) throw UsageError("ProcessPoolExecutor: moved-from");
  return *engine_;
}

void ProcessPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  detail::Engine& e = engine();
  e.close();
  if (cancel_futures) e.cancel_pending();
  if (wait) e.join();
}

std::size_t ProcessPoolExecutor::max_workers() const noexcept {
  return engine_ ? engine_->worker_count() : 0;
}

}  // namespace mproc
