// What shoutflow-bench sends: the operations, the mixes that weight them, and
// the requests built for each, over the users `<prefix><i>` that the prepare
// phase registers.
//
// Mixes (weights per 100 picks unless said):
//   write         PostShout only: the write path's load (the earlier write_bench's).
//   timeline      a read-heavy mix after Twitter's: per PostShout, 50 reads
//                 (GetTimeline page of 20 x 30, GetUser x 10, GetShout x 10).
//   post          PostShout (the same as write; kept for symmetry).
//   get-user, get-timeline, get-shout   one query each.
//   floor         GetUser with an invalid user id, which the service rejects
//                 at validation: the gRPC round trip alone, the floor under
//                 any read. INVALID_ARGUMENT is its success.
// GetShout reads shouts this run has seen created (the prepare phase's
// seeds, then the load's own posts).

#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace shoutflow::bench {

enum class op_kind : int {
  register_user,
  follow,
  seed_shout,
  post_shout,
  get_timeline,
  get_user,
  get_shout,
  floor,
  visible,
};
constexpr std::size_t op_count = 9;

/// The report's name of an operation ("post_shout").
const char* op_name(op_kind k);

enum class mix_kind {
  write,
  timeline,
  post,
  get_user,
  get_timeline,
  get_shout,
  floor
};

/// "write" -> mix_kind::write; nullopt for an unknown name.
std::optional<mix_kind> parse_mix(const std::string& name);
const char* mix_name(mix_kind m);
/// The mix names, comma-separated, for usage texts.
const char* mix_names();

/// Whether a mix sends queries (needs query targets) and commands.
bool mix_reads(mix_kind m);
bool mix_writes(mix_kind m);

/// Picks operations with the weights of a mix.
class op_picker {
public:
  explicit op_picker(mix_kind m);
  op_kind pick(std::mt19937_64& rng) const;

private:
  std::vector<std::pair<op_kind, int>> weights_;
  int total_ = 0;
};

/// A shout this run created and the global position of its write.
struct known_shout {
  std::string id;
  int64_t position = 0;
};

/// Shouts created by this run: a bounded ring, newest overwriting oldest,
/// shared by every callback thread. GetShout reads one with min_position =
/// its position, as a client that learnt the id from its own write would
/// (without it, a shout acknowledged a moment ago is NOT_FOUND until the
/// projection has it: read-your-writes is on request, DESIGN.md G6).
class shout_ids {
public:
  explicit shout_ids(std::size_t capacity = 65536) : capacity_(capacity) {
  }
  void add(const std::string& id, int64_t position);
  /// A random known shout; nullopt while none is known.
  std::optional<known_shout> any(std::mt19937_64& rng);
  std::size_t size();

private:
  std::mutex mu_;
  std::size_t capacity_;
  std::size_t next_ = 0;
  std::vector<known_shout> ids_;
};

/// The user ids, handles and follow targets of the prepare phase. Every id
/// is a function of the index, and every prepare command id of its content,
/// so a rerun against the same database answers them as duplicates and
/// writes nothing twice.
struct user_space {
  std::string prefix;
  int users = 0;

  std::string user_id(int i) const {
    return prefix + std::to_string(i);
  }
  /// Handles are `b<i>`: 15 characters at most for any index below 10^14.
  std::string handle(int i) const {
    return "b" + std::to_string(i);
  }
  /// The k-th user that user i follows: spread over the whole population
  /// (stride ~ users / follows), never i itself.
  int follow_target(int i, int k, int follows) const;
};

} // namespace shoutflow::bench
