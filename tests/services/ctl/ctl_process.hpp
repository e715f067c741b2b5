#pragma once

// Runs the real shoutflowctl binary ($SHOUTFLOWCTL, set by ctest) as a
// child process and captures what an operator or a script would see: exit
// code, stdout, stderr — either through pipes (a script) or on a pseudo
// terminal (an operator; stdout and stderr then share the terminal).
//
// The child's environment is ours minus the SHOUTFLOW_*ADDRESS variables
// (a developer's shell must not point the tests at another node), plus
// `env`. A child that outlives `timeout` is SIGKILLed and reported with
// exit code -1, so a hanging CLI fails the test instead of blocking it.

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

extern char** environ;

namespace shoutflow::testing {

struct ctl_result {
  /// The exit status; -1 when killed for running past the timeout (or
  /// killed by a signal).
  int exit_code = -1;
  std::string out;
  std::string err;
};

/// $SHOUTFLOWCTL, or empty.
inline std::string ctl_binary() {
  auto* path = std::getenv("SHOUTFLOWCTL");
  return path != nullptr ? path : "";
}

namespace ctl_detail {

using steady = std::chrono::steady_clock;

/// Owns the strings behind an argv/envp array.
struct c_strings {
  std::vector<std::string> items;
  std::vector<char*> pointers;
  char** get() {
    pointers.clear();
    for (auto& s : items)
      pointers.push_back(s.data());
    pointers.push_back(nullptr);
    return pointers.data();
  }
};

inline c_strings child_env(const std::map<std::string, std::string>& env) {
  c_strings out;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    auto name = entry.substr(0, entry.find('='));
    if (name == "SHOUTFLOW_ADMIN_ADDRESS" || name == "SHOUTFLOW_ADDRESS"
        || env.count(name) > 0)
      continue;
    out.items.push_back(entry);
  }
  for (auto& [k, v] : env)
    out.items.push_back(k + "=" + v);
  return out;
}

inline c_strings child_argv(const std::vector<std::string>& args) {
  c_strings out;
  out.items.push_back(ctl_binary());
  out.items.insert(out.items.end(), args.begin(), args.end());
  return out;
}

/// Reads every fd until EOF (or EIO: a pty whose other side closed) or
/// the deadline; false on the deadline.
inline bool drain(std::vector<std::pair<int, std::string*>> fds,
                  steady::time_point deadline) {
  while (!fds.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - steady::now())
                  .count();
    if (left <= 0)
      return false;
    std::vector<pollfd> polls;
    for (auto& f : fds)
      polls.push_back({f.first, POLLIN, 0});
    auto n = ::poll(polls.data(), polls.size(), static_cast<int>(left));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return false;
    for (std::size_t i = polls.size(); i-- > 0;) {
      if (polls[i].revents == 0)
        continue;
      char buf[4096];
      auto got = ::read(polls[i].fd, buf, sizeof buf);
      if (got > 0)
        fds[i].second->append(buf, static_cast<std::size_t>(got));
      else if (got == 0 || errno != EINTR)
        fds.erase(fds.begin() + static_cast<long>(i));
    }
  }
  return true;
}

/// Waits for `pid` until the deadline, then kills it; its exit code.
inline int reap(pid_t pid, steady::time_point deadline) {
  int status = 0;
  for (;;) {
    auto r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (r < 0 && errno != EINTR)
      return -1;
    if (steady::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -1;
    }
    // Output is drained; the child is only exiting now.
    ::usleep(2000);
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

} // namespace ctl_detail

/// `shoutflowctl ARGS...` with stdout and stderr on pipes.
inline ctl_result
run_ctl(const std::vector<std::string>& args,
        const std::map<std::string, std::string>& env = {},
        std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  ctl_result result;
  auto deadline = ctl_detail::steady::now() + timeout;
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    result.err = "pipe: " + std::string{std::strerror(errno)};
    return result;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null",
                                   O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
  auto argv = ctl_detail::child_argv(args);
  auto envp = ctl_detail::child_env(env);
  pid_t pid = -1;
  auto rc = posix_spawn(&pid, argv.items[0].c_str(), &actions, nullptr,
                        argv.get(), envp.get());
  posix_spawn_file_actions_destroy(&actions);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) {
    ::close(out[0]);
    ::close(err[0]);
    result.err = "posix_spawn " + argv.items[0] + ": " + std::strerror(rc);
    return result;
  }
  bool drained = ctl_detail::drain(
    {{out[0], &result.out}, {err[0], &result.err}}, deadline);
  ::close(out[0]);
  ::close(err[0]);
  result.exit_code = ctl_detail::reap(pid, drained ? deadline
                                                   : ctl_detail::steady::now());
  return result;
}

/// `shoutflowctl ARGS...` on a pseudo terminal: everything it writes ends
/// up in `out` (as a terminal shows it, with "\r\n" line ends).
inline ctl_result
run_ctl_on_terminal(const std::vector<std::string>& args,
                    const std::map<std::string, std::string>& env = {},
                    std::chrono::milliseconds timeout
                    = std::chrono::seconds(60)) {
  ctl_result result;
  auto deadline = ctl_detail::steady::now() + timeout;
  auto argv = ctl_detail::child_argv(args);
  auto envp = ctl_detail::child_env(env);
  winsize size{};
  size.ws_row = 40;
  size.ws_col = 160;
  // Built before the fork: the child of a threaded process must not
  // allocate before execve.
  char** child_argv = argv.get();
  char** child_envp = envp.get();
  int master = -1;
  auto pid = ::forkpty(&master, nullptr, nullptr, &size);
  if (pid < 0) {
    result.err = "forkpty: " + std::string{std::strerror(errno)};
    return result;
  }
  if (pid == 0) {
    ::execve(child_argv[0], child_argv, child_envp);
    ::_exit(127);
  }
  bool drained = ctl_detail::drain({{master, &result.out}}, deadline);
  ::close(master);
  result.exit_code = ctl_detail::reap(pid, drained ? deadline
                                                   : ctl_detail::steady::now());
  return result;
}

} // namespace shoutflow::testing
