#include "services/shoutflowctl/cli.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "services/shoutflowctl/commands.hpp"

namespace shoutflow::ctl {

namespace {

constexpr const char* default_admin_address = "127.0.0.1:50053";

const std::vector<flag_spec>& global_flags() {
  static const std::vector<flag_spec> flags = {
    {"--address", "HOST:PORT",
     "the node's AdminService (default $SHOUTFLOW_ADMIN_ADDRESS, else "
     "127.0.0.1:50053)"},
    {"--timeout", "DURATION",
     "deadline of each request: seconds or e.g. 500ms (default 10s)"},
    {"--output", "FORMAT",
     "text (default) or json: one JSON document, the reply's protobuf JSON "
     "mapping"},
    {"--help", "", "show help"},
  };
  return flags;
}

bool is_flag(const std::string& arg) {
  return arg.size() > 1 && arg[0] == '-';
}

/// "--from=3" -> ("--from", "3").
std::pair<std::string, std::optional<std::string>>
split_flag(const std::string& arg) {
  auto eq = arg.find('=');
  if (eq == std::string::npos)
    return {arg, std::nullopt};
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

const flag_spec* find_flag(const std::vector<flag_spec>& flags,
                           const std::string& name) {
  for (auto& f : flags)
    if (f.name == name)
      return &f;
  return nullptr;
}

/// The subcommands whose name starts with `word` ("dead-letters" matches
/// "dead-letters list" and "dead-letters retry").
std::vector<const command_spec*> group_of(const std::string& word) {
  std::vector<const command_spec*> out;
  for (auto& c : commands())
    if (c.name == word || c.name.rfind(word + " ", 0) == 0)
      out.push_back(&c);
  return out;
}

std::string flag_line(const flag_spec& f) {
  auto left = "  " + f.name + (f.value_name.empty() ? "" : " " + f.value_name);
  if (left.size() < 26)
    left.resize(26, ' ');
  else
    left += "\n" + std::string(26, ' ');
  return left + f.help + "\n";
}

void print_tool_help(std::ostream& out) {
  out << "usage: shoutflowctl [--address HOST:PORT] [--timeout DURATION] "
         "[--output text|json]\n"
         "                    SUBCOMMAND [ARGS]\n\n"
         "The operator's client of a ShoutFlow node (AdminService).\n\n"
         "subcommands:\n";
  for (auto& c : commands()) {
    auto left = "  " + c.name;
    if (left.size() < 26)
      left.resize(26, ' ');
    out << left << c.summary << "\n";
  }
  out << "\nglobal flags:\n";
  for (auto& f : global_flags())
    out << flag_line(f);
  out << "\nexit codes:\n"
         "  0  ok\n"
         "  1  the server failed the request (its gRPC code and message on "
         "stderr)\n"
         "  2  usage error, or INVALID_ARGUMENT from the server\n"
         "  3  unreachable: no connection, UNAVAILABLE or DEADLINE_EXCEEDED "
         "(retry may help)\n"
         "  4  not found: unknown user or projection, NOT_FOUND from the node\n"
         "  5  the operation did not succeed (rebuild abandoned, retried dead "
         "letter failed again)\n\n"
         "Run 'shoutflowctl SUBCOMMAND --help' for a subcommand's details; "
         "docs/shoutflowctl.md has examples.\n";
}

void print_command_help(const command_spec& c, std::ostream& out) {
  out << "usage: shoutflowctl " << c.synopsis << "\n\n" << c.summary << "\n";
  if (!c.details.empty())
    out << "\n" << c.details << "\n";
  if (!c.flags.empty()) {
    out << "\nflags:\n";
    for (auto& f : c.flags)
      out << flag_line(f);
  }
  out << "\nglobal flags:\n";
  for (auto& f : global_flags()) {
    if ((f.name == "--address" || f.name == "--timeout") && !c.uses_address)
      continue;
    if (f.name == "--output" && !c.uses_output)
      continue;
    out << flag_line(f);
  }
}

/// Applies a global flag; false (after a usage message) if its value is bad.
bool apply_global(const std::string& where, const std::string& name,
                  const std::string& value, global_options& g) {
  if (name == "--address") {
    if (value.empty() || value.find(':') == std::string::npos) {
      usage_error(where, "--address: expected HOST:PORT, got '" + value + "'");
      return false;
    }
    g.address = value;
    g.address_from_flag = true;
  } else if (name == "--timeout") {
    auto d = parse_duration(value);
    if (!d) {
      usage_error(where, "--timeout: expected a positive duration such as 5, "
                         "2.5 or 500ms, got '"
                           + value + "'");
      return false;
    }
    g.timeout = *d;
  } else if (name == "--output") {
    if (value == "text")
      g.output = output_format::text;
    else if (value == "json")
      g.output = output_format::json;
    else {
      usage_error(where,
                  "--output: expected text or json, got '" + value + "'");
      return false;
    }
  }
  return true;
}

/// The command line being parsed, front to back.
class command_line {
public:
  explicit command_line(std::vector<std::string> args)
    : args_(std::move(args)) {
  }

  /// --help or -h was seen anywhere.
  bool help = false;

  bool at_end() const {
    return next_ >= args_.size();
  }

  /// Global flags before the subcommand's name.
  exit_code globals_before_subcommand(global_options& g) {
    for (; !at_end() && is_flag(args_[next_]); ++next_) {
      auto [name, inline_value] = split_flag(args_[next_]);
      if (name == "--help" || name == "-h") {
        help = true;
        continue;
      }
      auto* f = find_flag(global_flags(), name);
      if (f == nullptr)
        return usage_error("", "unknown flag '" + name + "'");
      std::string value;
      if (auto r = take_value("", *f, inline_value, value); r != exit_code::ok)
        return r;
      if (!apply_global("", name, value, g))
        return exit_code::usage;
    }
    return exit_code::ok;
  }

  /// `help SUBCOMMAND` is `SUBCOMMAND --help`; a bare `help` leaves
  /// nothing to parse.
  void rewrite_help_subcommand() {
    if (args_[next_] != "help")
      return;
    ++next_;
    help = help || !at_end();
  }

  /// The subcommand (a group such as "dead-letters" takes its action from
  /// the next word). `spec` stays null when a group's help was printed.
  exit_code pick_command(const command_spec*& spec) {
    auto word = args_[next_++];
    auto group = group_of(word);
    if (group.empty())
      return usage_error("", "unknown subcommand '" + word + "'");
    if (group.size() == 1 && group[0]->name == word) {
      spec = group[0];
      return exit_code::ok;
    }
    std::string action = !at_end() && !is_flag(args_[next_]) ? args_[next_]
                                                             : "";
    for (auto* c : group)
      if (c->name == word + " " + action)
        spec = c;
    if (spec != nullptr) {
      ++next_;
      return exit_code::ok;
    }
    for (auto i = next_; i < args_.size(); ++i)
      help = help || args_[i] == "--help" || args_[i] == "-h";
    if (help) {
      for (auto* c : group) {
        print_command_help(*c, std::cout);
        std::cout << "\n";
      }
      return exit_code::ok;
    }
    std::string actions;
    for (auto* c : group)
      actions += (actions.empty() ? "" : ", ")
                 + c->name.substr(word.size() + 1);
    return usage_error(word, action.empty()
                               ? "missing action (one of: " + actions + ")"
                               : "unknown action '" + action
                                   + "' (one of: " + actions + ")");
  }

  /// The rest: the subcommand's flags and positionals, and global flags.
  exit_code command_args(const command_spec& spec, global_options& g,
                         parsed_args& out) {
    bool only_positionals = false;
    for (; !at_end(); ++next_) {
      auto& a = args_[next_];
      if (only_positionals || !is_flag(a)) {
        out.positionals.push_back(a);
        continue;
      }
      if (a == "--") {
        only_positionals = true;
        continue;
      }
      auto [name, inline_value] = split_flag(a);
      if (name == "--help" || name == "-h") {
        help = true;
        continue;
      }
      const flag_spec* f = find_flag(spec.flags, name);
      bool global = f == nullptr;
      if (global)
        f = find_flag(global_flags(), name);
      if (f == nullptr)
        return usage_error(spec.name, "unknown flag '" + name + "'");
      if (f->value_name.empty()) {
        if (inline_value)
          return usage_error(spec.name, name + " takes no value");
        out.switches.insert(name);
        continue;
      }
      std::string value;
      if (auto r = take_value(spec.name, *f, inline_value, value);
          r != exit_code::ok)
        return r;
      if (!global)
        out.values[name] = value;
      else if (!apply_global(spec.name, name, value, g))
        return exit_code::usage;
    }
    return exit_code::ok;
  }

private:
  /// A flag's value: after '=' or the next argument (even one that starts
  /// with '-', so "--interval -1" is refused by name, not as a flag).
  exit_code take_value(const std::string& where, const flag_spec& f,
                       const std::optional<std::string>& inline_value,
                       std::string& value) {
    if (inline_value) {
      value = *inline_value;
      return exit_code::ok;
    }
    if (next_ + 1 >= args_.size())
      return usage_error(where,
                         f.name + " needs a value (" + f.value_name + ")");
    value = args_[++next_];
    return exit_code::ok;
  }

  std::vector<std::string> args_;
  std::size_t next_ = 0;
};

} // namespace

std::optional<std::string> parsed_args::value(const std::string& flag) const {
  auto it = values.find(flag);
  if (it == values.end())
    return std::nullopt;
  return it->second;
}

bool parsed_args::has(const std::string& flag) const {
  return switches.count(flag) > 0 || values.count(flag) > 0;
}

const std::vector<command_spec>& commands() {
  static const std::vector<command_spec> all = {
    cluster_command(),
    stream_command(),
    projections_command(),
    rebuild_command(),
    dead_letters_list_command(),
    dead_letters_retry_command(),
    migrate_command(),
    list_command(),
    call_command(),
  };
  return all;
}

exit_code fail(const std::string& subcommand, exit_code code,
               const std::string& message) {
  std::cerr << "shoutflowctl: " << (subcommand.empty() ? "" : subcommand + ": ")
            << message << "\n";
  return code;
}

exit_code usage_error(const std::string& subcommand,
                      const std::string& message) {
  fail(subcommand, exit_code::usage,
       message + " (see 'shoutflowctl "
         + (subcommand.empty() ? "" : subcommand + " ") + "--help')");
  return exit_code::usage;
}

std::optional<int64_t>
parse_int(const std::string& subcommand, const std::string& what,
          const std::string& text, int64_t min, int64_t max) {
  errno = 0;
  char* end = nullptr;
  auto v = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno != 0 || v < min || v > max) {
    usage_error(subcommand, what + ": expected an integer from "
                              + std::to_string(min) + " to "
                              + std::to_string(max) + ", got '" + text + "'");
    return std::nullopt;
  }
  return v;
}

std::optional<int64_t>
int_flag(const std::string& subcommand, const parsed_args& args,
         const std::string& flag, int64_t fallback, int64_t min, int64_t max) {
  auto text = args.value(flag);
  if (!text)
    return fallback;
  return parse_int(subcommand, flag, *text, min, max);
}

std::optional<std::chrono::milliseconds>
parse_duration(const std::string& text) {
  std::string number = text;
  double scale = 1000.0;
  if (number.size() > 2 && number.compare(number.size() - 2, 2, "ms") == 0) {
    number.resize(number.size() - 2);
    scale = 1.0;
  } else if (number.size() > 1 && number.back() == 's') {
    number.pop_back();
  }
  if (number.empty())
    return std::nullopt;
  char* end = nullptr;
  errno = 0;
  auto v = std::strtod(number.c_str(), &end);
  if (*end != '\0' || errno != 0 || !std::isfinite(v) || v <= 0
      || v * scale > 1e9)
    return std::nullopt;
  auto ms = static_cast<int64_t>(std::llround(v * scale));
  return std::chrono::milliseconds(ms < 1 ? 1 : ms);
}

exit_code run(const std::vector<std::string>& args) {
  global_options g;
  auto* env = std::getenv("SHOUTFLOW_ADMIN_ADDRESS");
  g.address = env != nullptr && *env != '\0' ? env : default_admin_address;
  command_line line{args};
  if (auto r = line.globals_before_subcommand(g); r != exit_code::ok)
    return r;
  if (line.at_end()) {
    print_tool_help(line.help ? std::cout : std::cerr);
    return line.help ? exit_code::ok : exit_code::usage;
  }
  line.rewrite_help_subcommand();
  if (line.at_end()) {
    print_tool_help(std::cout);
    return exit_code::ok;
  }
  const command_spec* spec = nullptr;
  if (auto r = line.pick_command(spec); r != exit_code::ok || spec == nullptr)
    return r;
  parsed_args parsed;
  if (auto r = line.command_args(*spec, g, parsed); r != exit_code::ok)
    return r;
  if (line.help) {
    print_command_help(*spec, std::cout);
    return exit_code::ok;
  }
  if (parsed.positionals.size() < spec->positionals.size())
    return usage_error(spec->name,
                       "missing argument "
                         + spec->positionals[parsed.positionals.size()]);
  auto most = spec->positionals.size() + spec->optional_positionals.size();
  if (parsed.positionals.size() > most)
    return usage_error(spec->name, "unexpected argument '"
                                     + parsed.positionals[most] + "'");
  return spec->run(g, parsed);
}

} // namespace shoutflow::ctl
