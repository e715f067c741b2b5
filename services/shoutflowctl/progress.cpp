#include "services/shoutflowctl/progress.hpp"

#include <algorithm>
#include <cstdio>

#include "services/shoutflowctl/output.hpp"

namespace shoutflow::ctl {

namespace {

constexpr auto redraw_every = std::chrono::milliseconds(200);
constexpr int bar_width = 30;

double seconds_between(rate_window::clock::time_point a,
                       rate_window::clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

} // namespace

rate_window::rate_window(std::chrono::milliseconds span) : span_(span) {
}

void rate_window::add(clock::time_point at, int64_t done) {
  samples_.emplace_back(at, done);
  // Keep one sample older than the span, so the window always covers it.
  while (samples_.size() > 2 && at - samples_[1].first > span_)
    samples_.pop_front();
}

std::optional<double> rate_window::per_second() const {
  if (samples_.size() < 2)
    return std::nullopt;
  auto dt = seconds_between(samples_.front().first, samples_.back().first);
  if (dt < 0.1)
    return std::nullopt;
  auto units = samples_.back().second - samples_.front().second;
  return std::max(0.0, static_cast<double>(units) / dt);
}

std::optional<double> rate_window::eta_seconds(int64_t remaining) const {
  if (remaining <= 0)
    return 0.0;
  auto rate = per_second();
  if (!rate || *rate <= 0)
    return std::nullopt;
  return static_cast<double>(remaining) / *rate;
}

progress_meter::progress_meter(std::ostream& out, bool terminal,
                               std::chrono::milliseconds line_interval,
                               std::string label)
  : out_(out),
    terminal_(terminal),
    line_interval_(line_interval),
    label_(std::move(label)) {
}

std::string progress_meter::describe(int64_t done, int64_t total,
                                     const std::string& state) const {
  char buf[256];
  auto fraction
    = total > 0 ? static_cast<double>(done) / static_cast<double>(total) : 0.0;
  fraction = std::clamp(fraction, 0.0, 1.0);
  auto rate = rate_.per_second();
  auto eta = rate_.eta_seconds(total - done);
  std::string rate_text = rate ? std::to_string(static_cast<int64_t>(*rate))
                                   + " events/s"
                               : "measuring rate";
  std::string eta_text = eta ? "ETA " + format_seconds(*eta) : "ETA ?";
  if (terminal_) {
    auto filled = static_cast<int>(fraction * bar_width);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(bar_width, '.');
    std::snprintf(buf, sizeof buf, "%s [%s] %5.1f%% %lld/%lld events  %s  %s",
                  label_.c_str(), bar.c_str(), fraction * 100.0,
                  static_cast<long long>(done), static_cast<long long>(total),
                  rate_text.c_str(), eta_text.c_str());
  } else {
    std::snprintf(buf, sizeof buf, "%s: %s %.1f%% (%lld/%lld events), %s, %s",
                  label_.c_str(), state.c_str(), fraction * 100.0,
                  static_cast<long long>(done), static_cast<long long>(total),
                  rate_text.c_str(), eta_text.c_str());
  }
  return buf;
}

void progress_meter::update(int64_t done, int64_t total,
                            const std::string& state) {
  auto now = rate_window::clock::now();
  rate_.add(now, done);
  auto every = terminal_ ? redraw_every : line_interval_;
  if (last_output_ && now - *last_output_ < every)
    return;
  last_output_ = now;
  if (terminal_) {
    out_ << "\r\033[K" << describe(done, total, state) << std::flush;
    drawn_ = true;
  } else {
    out_ << describe(done, total, state) << std::endl;
  }
}

void progress_meter::finish(const std::string& message) {
  if (terminal_ && drawn_)
    out_ << "\r\033[K";
  drawn_ = false;
  if (message.empty())
    out_ << std::flush;
  else
    out_ << message << std::endl;
}

} // namespace shoutflow::ctl
