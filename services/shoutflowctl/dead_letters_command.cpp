// `shoutflowctl dead-letters list|retry`: events a projection could not
// apply (AdminService/ListDeadLetters, RetryDeadLetter).

#include <iostream>

#include "services/shoutflowctl/client.hpp"
#include "services/shoutflowctl/commands.hpp"
#include "services/shoutflowctl/output.hpp"
#include "services/shoutflowctl/projection_lookup.hpp"

namespace shoutflow::ctl {

namespace {

constexpr const char* list_name = "dead-letters list";
constexpr const char* retry_name = "dead-letters retry";
constexpr int32_t max_listed = 10000;

grpc::Status list(admin_client& client, const std::string& projection,
                  int32_t limit, v1::DeadLetters* out) {
  v1::ListDeadLettersRequest req;
  req.set_projection(projection);
  req.set_limit(limit);
  return client.call(&v1::AdminService::Stub::ListDeadLetters, req, out);
}

exit_code run_list(const global_options& g, const parsed_args& args) {
  auto limit = int_flag(list_name, args, "--limit", 100, 1, max_listed);
  if (!limit)
    return exit_code::usage;
  admin_client client{g};
  auto projection = args.value("--projection").value_or("");
  if (!projection.empty()) {
    // The node lists nothing for a name it does not know; say so instead.
    v1::ProjectionStatus status;
    auto s = client.call(&v1::AdminService::Stub::GetProjectionStatus,
                         v1::GetProjectionStatusRequest{}, &status);
    if (!s.ok())
      return report(list_name, client.address(), s);
    if (auto r = check_projection(list_name, status, projection);
        r != exit_code::ok)
      return r;
  }
  v1::DeadLetters letters;
  auto s = list(client, projection, static_cast<int32_t>(*limit), &letters);
  if (!s.ok())
    return report(list_name, client.address(), s);
  if (g.output == output_format::json) {
    print_json(std::cout, letters);
    return exit_code::ok;
  }
  if (letters.dead_letters().empty()) {
    std::cout << "no dead letters\n";
    return exit_code::ok;
  }
  table t({"ID", "PROJECTION", "GEN", "KEY", "POSITION", "STREAM", "SEQ",
           "TYPE", "RECORDED", "ERROR"});
  for (auto& d : letters.dead_letters())
    t.add(
      {std::to_string(d.id()), d.projection(), std::to_string(d.generation()),
       d.key(), std::to_string(d.global_position()), d.persistence_id(),
       std::to_string(d.seq_nr()), d.event_type(), format_time(d.recorded_at()),
       d.error().empty() ? "(parked behind an earlier one of its key)"
                         : d.error()});
  t.print(std::cout);
  return exit_code::ok;
}

exit_code run_retry(const global_options& g, const parsed_args& args) {
  auto id = parse_int(retry_name, "ID", args.positionals[0], 1, INT64_MAX);
  if (!id)
    return exit_code::usage;
  admin_client client{g};
  v1::RetryDeadLetterRequest req;
  req.set_id(*id);
  v1::RetryDeadLetterResponse resp;
  auto s = client.call(&v1::AdminService::Stub::RetryDeadLetter, req, &resp);
  if (!s.ok())
    return report(retry_name, client.address(), s);
  // Still listed means the event failed again: the retry did not help.
  v1::DeadLetters letters;
  s = list(client, "", max_listed, &letters);
  if (!s.ok())
    return report(retry_name, client.address(), s);
  const v1::DeadLetter* still = nullptr;
  for (auto& d : letters.dead_letters())
    if (d.id() == *id)
      still = &d;
  if (g.output == output_format::json)
    print_json(std::cout, resp);
  else if (still == nullptr)
    std::cout << "dead letter " << *id << ": applied (" << resp.applied()
              << " events of its key)\n";
  if (still != nullptr)
    return fail(retry_name, exit_code::failed,
                "dead letter " + std::to_string(*id)
                  + " failed again: " + still->error());
  return exit_code::ok;
}

} // namespace

command_spec dead_letters_list_command() {
  command_spec c;
  c.name = list_name;
  c.synopsis = "dead-letters list [--projection NAME] [--limit N] "
               "[--output text|json]";
  c.summary = "events projections could not apply, with their errors";
  c.details
    = "A projection that cannot apply an event records it here with the\n"
      "error and moves on; later events of the same key are parked behind it\n"
      "(listed without an error) so that key stays in log order. JSON: the\n"
      "DeadLetters message. An unknown --projection exits 4.";
  c.flags = {{"--projection", "NAME", "only this projection's"},
             {"--limit", "N", "at most N, 1-10000 (default 100)"}};
  c.run = run_list;
  return c;
}

command_spec dead_letters_retry_command() {
  command_spec c;
  c.name = retry_name;
  c.synopsis = "dead-letters retry ID [--output text|json]";
  c.summary = "apply a dead letter's event again, and those parked behind it";
  c.details
    = "Exits 0 when the event applied (it leaves the list), 5 when it failed\n"
      "again (the error is printed), 2 for an ID the node does not know.\n"
      "JSON: the RetryDeadLetterResponse message.";
  c.positionals = {"ID"};
  c.run = run_retry;
  return c;
}

} // namespace shoutflow::ctl
