// manager_remote.cpp — a manager served over TCP and used by a client that only knows its
// address and authkey (Python's BaseManager(address=..., authkey=...) with serve_forever and
// connect, here on loopback).
//
// Mirrors: no tutorial program; the remote half of Python's Manager story, which the seeds'
//          Manager example (manager_dict.cpp) grows into when one machine is not enough.
//
// What to notice
//  - Manager::serve("127.0.0.1:0", key) starts the server process; port 0 picks a free port
//    and address() says which. On a cluster: "0.0.0.0:5000" and a real secret.
//  - The client is a spawned process: it shares nothing with the server but the address and
//    the key. Manager::connect proves it knows the key (an HMAC challenge both ways) before
//    anything else is sent; a wrong key is an AuthenticationError.
//  - Named objects: dict<std::string, int>("inventory") is the same dict for every client.
//  - update() runs the function in the server, atomically: no lost increments.
#include <mproc/mproc.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

int add_one(std::optional<int> old) {
  return old.value_or(0) + 1;
}

void client(std::string address, std::string authkey, int id) {
  auto remote = mproc::Manager::connect(address, authkey);
  auto inventory = remote.dict<std::string, int>("inventory");
  // A lambda, not &add_one: a manager reached over TCP runs only code named by a type, never
  // an address a client sends (see docs/security.md).
  for (int i = 0; i < 100; ++i) {
    inventory.update("widgets", [](std::optional<int> old) { return add_one(old); });
  }
  remote.list<std::string>("log").append("client " + std::to_string(id) + " done");
}

int main() {
  const std::string authkey = "a shared secret";
  auto server = mproc::Manager::serve("127.0.0.1:0", authkey);
  std::printf("manager serving at %s (pid %d)\n", server.address().c_str(), server.pid());

  std::vector<mproc::Process> clients;
  for (int id = 0; id < 3; ++id) {
    clients.emplace_back(mproc::ProcessOptions{.start = mproc::StartMethod::spawn}, &client,
                         server.address(), authkey, id);
  }
  for (auto& c : clients) c.start();
  for (auto& c : clients) c.join();

  try {
    mproc::Manager::connect(server.address(), "not the key");
  } catch (const mproc::AuthenticationError& e) {
    std::printf("a client with the wrong key: %s\n", e.what());
  }

  const int widgets = server.dict<std::string, int>("inventory").get("widgets").value_or(0);
  std::printf("widgets = %d (3 clients x 100 atomic increments)\n", widgets);
  for (const auto& line : server.list<std::string>("log").to_vector()) {
    std::printf("  %s\n", line.c_str());
  }
  server.shutdown();
  return widgets == 300 ? 0 : 1;
}
