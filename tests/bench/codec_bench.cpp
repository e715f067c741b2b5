// codec_bench: the cost of encoding a projection's committed batch.
//
//   codec_bench [Google Benchmark flags]
//
// Every live partition batch is encoded twice (its change-log row and its
// broadcast to the watch hubs), and a timelines batch holds one change per
// home a post reaches. The profile of the write peak (every role) had
// encode_batch at 12 % of the node (docs/benchmarks.md, issue 14).
//
//   encode/copied/N — the baseline, kept here: what encode_batch did before
//                     (a temporary ReadModelChange per change, copied into a
//                     heap-allocated batch).
//   encode/real/N   — projection::encode_batch as the node runs it.
//
// N changes shaped like a timelines batch (timeline_add: owner id, shout id,
// a cursor, the partition). Compare the two rows of one run: the ratio is
// what counts on a shared machine. Needs no database.

#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "actors/projection/read_side_codec.hpp"

namespace {

using namespace shoutflow;
using namespace shoutflow::projection;

std::vector<change> timeline_changes(int n) {
  std::vector<change> out;
  out.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    change c;
    c.kind = change::timeline_add;
    c.subject = "user-" + std::to_string(10000 + i % 2000);
    c.item = "7d3f" + std::to_string(100000000 + i);
    c.tx = 7000000 + static_cast<uint64_t>(i / 16);
    c.position = 900000 + i;
    c.partition = i % 8;
    out.push_back(std::move(c));
  }
  return out;
}

std::string encode_copied(const std::string& projection, int32_t generation,
                          int32_t count, const std::vector<int32_t>& parts,
                          const cursor& after, const cursor& to,
                          const std::vector<change>& changes) {
  v1::ReadSideMessage msg;
  auto* b = msg.mutable_batch();
  b->set_projection(projection);
  b->set_generation(generation);
  b->set_partition_count(count);
  for (auto p : parts)
    b->add_partitions(p);
  *b->mutable_after() = to_proto(after);
  *b->mutable_to() = to_proto(to);
  for (auto& c : changes)
    *b->add_changes() = to_proto(c);
  return msg.SerializeAsString();
}

using encoder = std::string (*)(const std::string&, int32_t, int32_t,
                                const std::vector<int32_t>&, const cursor&,
                                const cursor&, const std::vector<change>&);

void encode_bm(benchmark::State& state, encoder encode) {
  auto changes = timeline_changes(static_cast<int>(state.range(0)));
  std::size_t bytes = 0;
  for (auto _ : state) {
    auto out = encode("timelines", 1, 8, {3}, {7000000, 900000},
                      {7000200, 903000}, changes);
    bytes = out.size();
    benchmark::DoNotOptimize(out);
  }
  state.SetItemsProcessed(state.iterations() * state.range(0));
  state.counters["bytes"] = static_cast<double>(bytes);
}

/// encode_batch without its default argument, as an `encoder`.
std::string encode_real(const std::string& projection, int32_t generation,
                        int32_t count, const std::vector<int32_t>& parts,
                        const cursor& after, const cursor& to,
                        const std::vector<change>& changes) {
  return encode_batch(projection, generation, count, parts, after, to, changes);
}

BENCHMARK_CAPTURE(encode_bm, copied, &encode_copied)
  ->Name("encode/copied")
  ->Arg(20)
  ->Arg(2000);
BENCHMARK_CAPTURE(encode_bm, real, &encode_real)
  ->Name("encode/real")
  ->Arg(20)
  ->Arg(2000);

} // namespace

BENCHMARK_MAIN();
