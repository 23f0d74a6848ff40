// examples/readme_hello.cpp
#include <mproc/mproc.hpp>

#include <cstdio>
#include <string>

void greet(std::string who, mproc::Connection reply) {
  reply.send("hello, " + who + " from " + mproc::current_process().name());
}

int main() {
  auto [parent_end, child_end] = mproc::Pipe();
  mproc::Process p(greet, std::string("world"), child_end);
  p.start();
  std::printf("%s\n", parent_end.recv<std::string>().c_str());
  p.join();
  std::printf("child exited with %d\n", *p.exitcode());
}
