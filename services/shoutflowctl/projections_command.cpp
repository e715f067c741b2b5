// `shoutflowctl projections [NAME]`: every projection generation with its
// position, lag and dead letters, and each partition's offset
// (AdminService/GetProjectionStatus; any node answers from the database).

#include <iostream>

#include "services/shoutflowctl/client.hpp"
#include "services/shoutflowctl/commands.hpp"
#include "services/shoutflowctl/output.hpp"
#include "services/shoutflowctl/projection_lookup.hpp"

namespace shoutflow::ctl {

namespace {

constexpr const char* name = "projections";

exit_code run(const global_options& g, const parsed_args& args) {
  admin_client client{g};
  v1::ProjectionStatus status;
  auto s = client.call(&v1::AdminService::Stub::GetProjectionStatus,
                       v1::GetProjectionStatusRequest{}, &status);
  if (!s.ok())
    return report(name, client.address(), s);
  if (!args.positionals.empty()) {
    auto& wanted = args.positionals[0];
    if (auto r = check_projection(name, status, wanted); r != exit_code::ok)
      return r;
    v1::ProjectionStatus only;
    only.set_head_position(status.head_position());
    for (auto& p : status.projections())
      if (p.projection() == wanted)
        *only.add_projections() = p;
    status = std::move(only);
  }
  if (g.output == output_format::json) {
    print_json(std::cout, status);
    return exit_code::ok;
  }
  std::cout << "head position: " << status.head_position() << "\n\n";
  table t({"PROJECTION", "GEN", "STATE", "POSITION", "LAG_EVENTS", "LAG",
           "APPLIED", "DEAD_LETTERS", "PARTITIONS (PART=POSITION/EVENTS)"});
  for (auto& p : status.projections()) {
    std::string parts;
    for (auto& o : p.partitions())
      parts += (parts.empty() ? "" : " ") + std::to_string(o.partition()) + "="
               + std::to_string(o.position()) + "/"
               + std::to_string(o.events());
    t.add({p.projection(), std::to_string(p.generation()), p.state(),
           std::to_string(p.position()), std::to_string(p.lag_events()),
           format_seconds(p.lag_seconds()), std::to_string(p.events_applied()),
           std::to_string(p.dead_letters()), parts.empty() ? "-" : parts});
  }
  t.print(std::cout);
  return exit_code::ok;
}

} // namespace

command_spec projections_command() {
  command_spec c;
  c.name = name;
  c.synopsis = "projections [NAME] [--output text|json]";
  c.summary = "projection status: position, lag in events and seconds, dead "
              "letters, per partition";
  c.details
    = "One line per generation (the live one, and one being rebuilt):\n"
      "POSITION is the watermark (everything up to it in log order is\n"
      "applied), LAG_EVENTS the events after it, LAG the age of the oldest of\n"
      "them, APPLIED the events it has been through, and per partition its\n"
      "committed position and the events it applied. NAME shows one\n"
      "projection (an unknown one exits 4). JSON: the ProjectionStatus\n"
      "message.";
  c.optional_positionals = {"NAME"};
  c.run = run;
  return c;
}

} // namespace shoutflow::ctl
