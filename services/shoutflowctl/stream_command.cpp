// `shoutflowctl stream USER`: a user's events as the journal holds them,
// decoded (AdminService/ReadStream; password hashes come back redacted).

#include <iostream>

#include "services/shoutflowctl/client.hpp"
#include "services/shoutflowctl/commands.hpp"
#include "services/shoutflowctl/output.hpp"

namespace shoutflow::ctl {

namespace {

constexpr const char* name = "stream";

/// The event's payload (the member of the UserEvent oneof that is set) as
/// compact JSON; "(undecodable)" when the node could not decode it.
std::string payload_of(const v1::StoredEvent& e) {
  auto& event = e.event();
  auto* oneof = event.GetDescriptor()->FindOneofByName("event");
  auto* field = event.GetReflection()->GetOneofFieldDescriptor(event, oneof);
  if (field == nullptr)
    return "(undecodable)";
  return compact_json(event.GetReflection()->GetMessage(event, field));
}

exit_code run(const global_options& g, const parsed_args& args) {
  auto& user = args.positionals[0];
  auto from = int_flag(name, args, "--from", 1, 1, INT64_MAX);
  auto limit = int_flag(name, args, "--limit", 100, 1, 10000);
  if (!from || !limit)
    return exit_code::usage;
  v1::ReadStreamRequest req;
  req.set_user_id(user);
  req.set_from_seq(*from);
  req.set_limit(static_cast<int32_t>(*limit));
  admin_client client{g};
  v1::StreamEvents events;
  auto s = client.call(&v1::AdminService::Stub::ReadStream, req, &events);
  if (!s.ok())
    return report(name, client.address(), s);
  if (events.last_seq_nr() == 0)
    return fail(name, exit_code::not_found,
                "no user '" + user + "' (USER: its stream has no events)");
  // Paging hint, not data: on stderr, in either format.
  int64_t shown_to = events.events_size() > 0
                       ? events.events(events.events_size() - 1).seq_nr()
                       : *from - 1;
  if (shown_to < events.last_seq_nr())
    std::cerr << "(" << events.last_seq_nr() - shown_to
              << " more; next page: --from " << shown_to + 1 << ")\n";
  if (g.output == output_format::json) {
    print_json(std::cout, events);
    return exit_code::ok;
  }
  table t({"SEQ", "POSITION", "RECORDED", "TYPE", "COMMAND", "PAYLOAD"});
  for (auto& e : events.events())
    t.add(
      {std::to_string(e.seq_nr()), std::to_string(e.global_position()),
       format_time(e.recorded_at()),
       e.event_type()
         + (e.event_version() != 1 ? " v" + std::to_string(e.event_version())
                                   : ""),
       e.command_id().empty() ? "-" : e.command_id(), payload_of(e)});
  t.print(std::cout);
  return exit_code::ok;
}

} // namespace

command_spec stream_command() {
  command_spec c;
  c.name = name;
  c.synopsis = "stream USER [--from SEQ] [--limit N] [--output text|json]";
  c.summary = "a user's events, decoded: seq_nr, position, time, type, payload";
  c.details
    = "Reads the user's stream from the journal in seq_nr order. Text: one\n"
      "line per event, the payload as compact JSON (password hashes are\n"
      "redacted by the node); when more events follow, a hint with the next\n"
      "--from goes to stderr. JSON: the StreamEvents message, whose\n"
      "last_seq_nr is the newest seq_nr of the stream.\n"
      "An unknown user exits 4; an invalid user id exits 2.";
  c.flags = {{"--from", "SEQ", "first seq_nr to show (default 1)"},
             {"--limit", "N", "at most N events, 1-10000 (default 100)"}};
  c.positionals = {"USER"};
  c.run = run;
  return c;
}

} // namespace shoutflow::ctl
