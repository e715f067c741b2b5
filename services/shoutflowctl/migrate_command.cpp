// `shoutflowctl migrate`: applies the embedded schema migrations to a
// database directly (no node involved), as `shoutflowd --migrate-only`
// does; a Kubernetes migration Job runs either.

#include <pqxx/pqxx>

#include <cstdlib>
#include <iostream>

#include "actors/journal/migrations.hpp"
#include "services/shoutflowctl/commands.hpp"

namespace shoutflow::ctl {

namespace {

constexpr const char* name = "migrate";

exit_code run(const global_options& g, const parsed_args& args) {
  auto url = args.value("--db-url").value_or("");
  if (url.empty())
    if (auto* env = std::getenv("SHOUTFLOW_DB_URL"))
      url = env;
  if (url.empty())
    return usage_error(name, "missing --db-url (or SHOUTFLOW_DB_URL)");
  // migrate() reports every failure alike; connecting first tells "cannot
  // reach" (exit 3, worth retrying) from "a migration failed" (exit 1).
  try {
    pqxx::connection probe{url};
  } catch (const std::exception& e) {
    return fail(name, exit_code::unreachable,
                std::string{"cannot reach the database: "} + e.what());
  }
  journal::migration_report r;
  try {
    r = journal::migrate(url);
  } catch (const std::exception& e) {
    return fail(name, exit_code::server_error, e.what());
  }
  if (g.output == output_format::json)
    std::cout << "{\n  \"schema_version\": " << r.current_version
              << ",\n  \"applied\": " << r.applied << "\n}\n";
  else
    std::cout << "schema version " << r.current_version << " (" << r.applied
              << " applied)\n";
  return exit_code::ok;
}

} // namespace

command_spec migrate_command() {
  command_spec c;
  c.name = name;
  c.synopsis = "migrate [--db-url URL] [--output text|json]";
  c.summary = "apply pending schema migrations to the database";
  c.details
    = "Talks to PostgreSQL, not to a node. Safe to run while nodes run and\n"
      "more than once: an advisory lock serializes it, applied migrations\n"
      "are skipped. JSON: {\"schema_version\": N, \"applied\": M}.";
  c.flags = {{"--db-url", "URL", "the database (default $SHOUTFLOW_DB_URL)"}};
  c.uses_address = false;
  c.run = run;
  return c;
}

} // namespace shoutflow::ctl
