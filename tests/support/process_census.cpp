#include "support/process_census.hpp"

#include <dirent.h>
#include <unistd.h>

#include <fstream>

namespace mproc::test {

std::set<int> open_fds() {
  std::set<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  const int own = ::dirfd(dir);
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const int fd = std::stoi(e->d_name);
    if (fd != own) fds.insert(fd);
  }
  ::closedir(dir);
  return fds;
}

std::string fd_target(int fd) {
  char buf[512];
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(path.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "?";
}

std::set<int> child_pids() {
  std::set<int> pids;
  DIR* dir = ::opendir("/proc/self/task");
  if (dir == nullptr) return pids;
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/children");
    int pid = 0;
    while (in >> pid) pids.insert(pid);
  }
  ::closedir(dir);
  return pids;
}

std::set<std::string> names_in(const char* dir_path, const char* prefix) {
  std::set<std::string> names;
  DIR* dir = ::opendir(dir_path);
  if (dir == nullptr) return names;
  while (const dirent* e = ::readdir(dir)) {
    if (std::string(e->d_name).rfind(prefix, 0) == 0) names.insert(e->d_name);
  }
  ::closedir(dir);
  return names;
}

}  // namespace mproc::test
