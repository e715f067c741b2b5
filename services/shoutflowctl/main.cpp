// shoutflowctl: the operator's command-line client of a ShoutFlow node.
// The grammar and exit codes are in cli.hpp, each subcommand in a file of
// its own (commands.hpp), the manual in docs/shoutflowctl.md.

#include <string>
#include <vector>

#include "services/shoutflowctl/cli.hpp"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return static_cast<int>(shoutflow::ctl::run(args));
}
