#include "services/bench/lib/machine.hpp"

#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <ctime>
#include <fstream>
#include <string>

namespace shoutflow::bench {

machine_info read_machine() {
  machine_info m;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  m.nproc = n > 0 ? static_cast<unsigned>(n) : 0;
  std::ifstream cpuinfo{"/proc/cpuinfo"};
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos)
        m.cpu_model = line.substr(line.find_first_not_of(" \t", colon + 1));
      break;
    }
  }
  std::ifstream meminfo{"/proc/meminfo"};
  for (std::string key; meminfo >> key;) {
    double kib = 0;
    meminfo >> kib;
    if (key == "MemTotal:") {
      m.memory_gib = kib / (1024.0 * 1024.0);
      break;
    }
    meminfo.ignore(4096, '\n');
  }
  utsname u{};
  if (uname(&u) == 0) {
    m.kernel = u.release;
    m.hostname = u.nodename;
  }
  return m;
}

std::array<double, 3> load_average() {
  std::array<double, 3> avg{0, 0, 0};
  std::ifstream in{"/proc/loadavg"};
  in >> avg[0] >> avg[1] >> avg[2];
  if (!in)
    avg = {0, 0, 0};
  return avg;
}

double cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto secs = [](const timeval& tv) {
    return static_cast<double>(tv.tv_sec)
           + static_cast<double>(tv.tv_usec) / 1e6;
  };
  return secs(ru.ru_utime) + secs(ru.ru_stime);
}

std::string utc_timestamp() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

} // namespace shoutflow::bench
