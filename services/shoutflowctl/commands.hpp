#pragma once

// The subcommands of shoutflowctl, one file each; cli.cpp lists them.

#include "services/shoutflowctl/cli.hpp"

namespace shoutflow::ctl {

command_spec cluster_command();
command_spec stream_command();
command_spec projections_command();
command_spec rebuild_command();
command_spec dead_letters_list_command();
command_spec dead_letters_retry_command();
command_spec migrate_command();
command_spec list_command();
command_spec call_command();

} // namespace shoutflow::ctl
