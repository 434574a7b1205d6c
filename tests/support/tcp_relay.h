// TcpRelay: a TCP relay on a loopback port, for tests that need a connection
// that dies without a word. It accepts connections and forwards each, both
// ways, to `target_port`; Silence() makes it stop forwarding in both
// directions while keeping every socket open: what either side sends from
// then on is read and dropped, as by a network that loses packets (no FIN, no
// RST: to both ends the connection still looks alive). One thread, poll with
// a short timeout so that the destructor stops it promptly.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace zchat::testing {

class TcpRelay {
 public:
  explicit TcpRelay(int target_port) : target_port_(target_port) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr = Loopback(0);
    int one = 1;
    ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) ==
            0 &&
        ::listen(listener_, 16) == 0) {
      socklen_t len = sizeof addr;
      ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
      port_ = ntohs(addr.sin_port);
    }
    thread_ = std::thread([this] { Run(); });
  }
  ~TcpRelay() {
    stop_ = true;
    thread_.join();
    for (const Pair& p : pairs_) {
      ::close(p.client);
      ::close(p.target);
    }
    ::close(listener_);
  }
  TcpRelay(const TcpRelay&) = delete;
  TcpRelay& operator=(const TcpRelay&) = delete;

  // 0 if the relay could not listen.
  int port() const { return port_; }
  std::string endpoint() const {
    return "tcp://127.0.0.1:" + std::to_string(port_);
  }
  // From now on nothing passes, either way; the sockets stay open.
  void Silence() { silent_ = true; }
  // Bytes read and dropped since Silence(), from the target's side.
  uint64_t dropped_from_target() const { return dropped_from_target_; }

 private:
  static sockaddr_in Loopback(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
  }

  // Writes all of `n` bytes (loopback: blocking writes are short).
  static bool WriteAll(int fd, const char* data, ssize_t n) {
    while (n > 0) {
      ssize_t w = ::write(fd, data, static_cast<size_t>(n));
      if (w <= 0) return false;
      data += w;
      n -= w;
    }
    return true;
  }

  void Run() {
    char buf[64 * 1024];
    while (!stop_) {
      std::vector<pollfd> fds{{listener_, POLLIN, 0}};
      for (const Pair& p : pairs_) {
        // A pair one side closed is no longer polled (nor forwarded).
        fds.push_back({p.open ? p.client : -1, POLLIN, 0});
        fds.push_back({p.open ? p.target : -1, POLLIN, 0});
      }
      if (::poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int client = ::accept(listener_, nullptr, nullptr);
        int target = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr = Loopback(target_port_);
        if (client >= 0 && target >= 0 &&
            ::connect(target, reinterpret_cast<sockaddr*>(&addr),
                      sizeof addr) == 0) {
          pairs_.push_back(Pair{client, target, true});
        } else {
          if (client >= 0) ::close(client);
          if (target >= 0) ::close(target);
        }
      }
      for (size_t i = 1; i < fds.size(); ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const bool from_client = (i % 2) == 1;
        Pair& pair = pairs_[(i - 1) / 2];
        const int from = from_client ? pair.client : pair.target;
        const int to = from_client ? pair.target : pair.client;
        ssize_t n = ::read(from, buf, sizeof buf);
        if (n <= 0) {
          // Closed: pass that on (unless silent), then leave the pair.
          if (!silent_) ::shutdown(to, SHUT_WR);
          pair.open = false;
          continue;
        }
        if (silent_) {
          if (!from_client) dropped_from_target_ += static_cast<uint64_t>(n);
          continue;
        }
        WriteAll(to, buf, n);
      }
    }
  }

  const int target_port_;
  int listener_ = -1;
  int port_ = 0;
  struct Pair {
    int client;
    int target;
    bool open;
  };
  std::vector<Pair> pairs_;  // relay thread only (and the destructor)
  std::atomic<bool> stop_{false};
  std::atomic<bool> silent_{false};
  std::atomic<uint64_t> dropped_from_target_{0};
  std::thread thread_;
};

}  // namespace zchat::testing
