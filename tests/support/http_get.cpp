#include "tests/support/http_get.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace shoutflow::testing {

namespace {

using clock_type = std::chrono::steady_clock;

int remaining_ms(clock_type::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
    deadline - clock_type::now());
  return left.count() < 0 ? 0 : static_cast<int>(left.count());
}

/// Waits for `events` on fd; false on timeout or error.
bool wait_for(int fd, short events, clock_type::time_point deadline) {
  pollfd p{fd, events, 0};
  for (;;) {
    int r = ::poll(&p, 1, remaining_ms(deadline));
    if (r > 0)
      return true;
    if (r == 0 || errno != EINTR)
      return false;
  }
}

} // namespace

http_reply http_get(const std::string& host, int port,
                    const std::string& target,
                    std::chrono::milliseconds timeout) {
  http_reply out;
  auto deadline = clock_type::now() + timeout;
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    out.error = std::strerror(errno);
    return out;
  }
  struct closer {
    int fd;
    ~closer() {
      ::close(fd);
    }
  } close_fd{fd};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    out.error = "not an IPv4 address: " + host;
    return out;
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      && errno != EINPROGRESS) {
    out.error = std::string{"connect: "} + std::strerror(errno);
    return out;
  }
  if (!wait_for(fd, POLLOUT, deadline)) {
    out.error = "connect timed out";
    return out;
  }
  int err = 0;
  socklen_t len = sizeof(err);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  if (err != 0) {
    out.error = std::string{"connect: "} + std::strerror(err);
    return out;
  }
  auto request = "GET " + target + " HTTP/1.0\r\nHost: " + host + ":"
                 + std::to_string(port) + "\r\nConnection: close\r\n\r\n";
  std::size_t sent = 0;
  while (sent < request.size()) {
    if (!wait_for(fd, POLLOUT, deadline)) {
      out.error = "send timed out";
      return out;
    }
    auto n = ::send(fd, request.data() + sent, request.size() - sent,
                    MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      out.error = std::string{"send: "} + std::strerror(errno);
      return out;
    }
    if (n > 0)
      sent += static_cast<std::size_t>(n);
  }
  std::string raw;
  char buf[16384];
  for (;;) {
    if (!wait_for(fd, POLLIN, deadline)) {
      out.error = "reply timed out";
      return out;
    }
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n == 0)
      break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR)
        continue;
      out.error = std::string{"recv: "} + std::strerror(errno);
      return out;
    }
    raw.append(buf, static_cast<std::size_t>(n));
  }
  auto head_end = raw.find("\r\n\r\n");
  auto sp = raw.find(' ');
  if (head_end == std::string::npos || sp == std::string::npos
      || raw.compare(0, 5, "HTTP/") != 0) {
    out.error = "malformed reply: " + raw.substr(0, 200);
    return out;
  }
  out.status = std::atoi(raw.c_str() + sp + 1);
  out.body = raw.substr(head_end + 4);
  return out;
}

std::string url_encode(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

} // namespace shoutflow::testing
