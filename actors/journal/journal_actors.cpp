#include "actors/journal/journal_actors.hpp"

#include <caf/actor_system_config.hpp>
#include <caf/atom.hpp>

namespace shoutflow::journal {

namespace {

constexpr auto db_category = caf::atom("db");

} // namespace

caf::error make_error(db_errc code, std::string detail) {
  return caf::error{static_cast<uint8_t>(code), db_category,
                    caf::make_message(std::move(detail))};
}

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<event_record>("shoutflow.event_record");
  cfg.add_message_type<std::vector<event_record>>(
    "std::vector<shoutflow.event_record>");
  cfg.add_message_type<claim_op>("shoutflow.claim_op");
  cfg.add_message_type<journal_write>("shoutflow.journal_write");
  cfg.add_message_type<std::vector<journal_write>>(
    "std::vector<shoutflow.journal_write>");
  cfg.add_message_type<write_outcome>("shoutflow.write_outcome");
  cfg.add_message_type<std::vector<write_outcome>>(
    "std::vector<shoutflow.write_outcome>");
  cfg.add_message_type<snapshot_record>("shoutflow.snapshot_record");
  cfg.add_message_type<recovery_data>("shoutflow.recovery_data");
  cfg.add_message_type<claim_lookup>("shoutflow.claim_lookup");
  cfg.add_message_type<command_lookup>("shoutflow.command_lookup");
  cfg.add_message_type<journal_stats>("shoutflow.journal_stats");
  cfg.add_error_category(db_category, [](uint8_t code, caf::atom_value,
                                         const caf::message& ctx) {
    std::string out = code == static_cast<uint8_t>(db_errc::unavailable)
                        ? "database unavailable"
                      : code == static_cast<uint8_t>(db_errc::fenced)
                        ? "fenced: the lease moved on"
                        : "stored data corrupt";
    if (ctx.match_elements<std::string>())
      out += ": " + ctx.get_as<std::string>(0);
    return out;
  });
}

} // namespace shoutflow::journal
