#include "mproc/errors.hpp"

#include <string>
#include <utility>

namespace mproc {

namespace {
std::string remote_what(const std::string& type_name, const std::string& message, std::int64_t pid,
                        std::int64_t task_index) {
  std::string s = type_name + ": " + message + " (in pid " + std::to_string(pid);
  if (task_index >= 0) s += ", task " + std::to_string(task_index);
  return s + ")";
}

std::string crashed_what(std::int64_t pid, int signal, std::optional<int> exit_code,
                         std::int64_t task_index) {
  std::string s = "worker pid " + std::to_string(pid);
  if (signal > 0) {
    s += " was killed by signal " + std::to_string(signal);
  } else {
    s += " exited with code " + std::to_string(exit_code.value_or(-1));
  }
  if (task_index >= 0) s += " while running task " + std::to_string(task_index);
  return s;
}

std::string timeout_what(std::int64_t pid, std::chrono::nanoseconds timeout,
                         std::int64_t task_index) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();
  // Appends one piece at a time: g++ 12 -O3 reports a false -Wrestrict for `" " + to_string`.
  std::string s = "task";
  if (task_index >= 0) {
    s += ' ';
    s += std::to_string(task_index);
  }
  s += " exceeded its timeout of ";
  s += std::to_string(ms);
  s += " ms; worker pid ";
  s += std::to_string(pid);
  s += " was killed and replaced";
  return s;
}
}  // namespace

RemoteError::RemoteError(std::string type_name, std::string message, std::int64_t pid,
                         std::int64_t task_index, std::string backtrace)
    : Error(remote_what(type_name, message, pid, task_index)),
      type_name_(std::move(type_name)),
      message_(std::move(message)),
      pid_(pid),
      task_index_(task_index),
      backtrace_(std::move(backtrace)) {}

WorkerCrashed::WorkerCrashed(std::int64_t pid, int signal, std::optional<int> exit_code,
                             std::int64_t task_index)
    : Error(crashed_what(pid, signal, exit_code, task_index)),
      pid_(pid),
      signal_(signal),
      exit_code_(signal > 0 ? std::nullopt : exit_code),
      task_index_(task_index) {}

TaskTimeout::TaskTimeout(std::int64_t pid, std::chrono::nanoseconds timeout,
                         std::int64_t task_index)
    : Error(timeout_what(pid, timeout, task_index)),
      pid_(pid),
      timeout_(timeout),
      task_index_(task_index) {}

BufferTooShort::BufferTooShort(std::vector<std::byte> message, std::size_t buffer_size)
    : Error("recv_bytes_into: the message has " + std::to_string(message.size()) +
            " bytes but the buffer only " + std::to_string(buffer_size) +
            "; the message is in BufferTooShort::message()"),
      message_(std::move(message)) {}

SystemError::SystemError(std::error_code code, std::string call)
    : Error(call + ": " + code.message()), code_(code), call_(std::move(call)) {}

}  // namespace mproc
