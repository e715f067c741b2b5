#include "services/query/watch_session.hpp"

#include <caf/all.hpp>

#include <deque>
#include <memory>
#include <mutex>
#include <optional>

#include "actors/common/log.hpp"
#include "actors/entity/effect.hpp"
#include "actors/user/user_validation.hpp"
#include "services/common/grpc_status.hpp"
#include "services/common/request_intake.hpp"

namespace shoutflow::services {

namespace {

// -- Watch --------------------------------------------------------------------

class watch_stream;

/// What a session hands to its gRPC stream: a bounded queue of serialized
/// DocumentChanges, written one at a time. Shared by the session actor and
/// the reactor; the reactor detaches it when the call is over.
class watch_outbox {
public:
  watch_outbox(std::size_t capacity, query_metrics* metrics)
    : capacity_(capacity), metrics_(metrics) {
  }

  query_metrics* metrics() const {
    return metrics_;
  }

  /// Messages pushed before the stream exists wait for it.
  void attach(watch_stream* r);

  /// False once the stream is over (ended, cancelled, or this message
  /// overflowed the buffer).
  bool push(std::string bytes);

  /// Ends the stream (after the write in flight, if any).
  void finish(grpc::Status status);

  void on_write_done(bool ok);

  void detach() {
    std::lock_guard<std::mutex> guard{mtx_};
    over_ = true;
    pending_finish_.reset();
    stream_ = nullptr;
  }

private:
  void start_next_locked();
  void finish_locked(grpc::Status status);
  void finish_now_locked(grpc::Status status);

  std::mutex mtx_;
  std::size_t capacity_;
  query_metrics* metrics_;
  std::deque<grpc::ByteBuffer> queue_;
  bool writing_ = false;
  bool over_ = false;
  /// Finish was called: exactly once, or the RPC never ends (OnDone only
  /// follows Finish, and a server shutdown waits for every RPC forever).
  bool finished_ = false;
  std::optional<grpc::Status> pending_finish_;
  watch_stream* stream_ = nullptr;
};

class watch_stream final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
public:
  watch_stream(std::shared_ptr<watch_outbox> outbox, caf::actor session)
    : outbox_(std::move(outbox)), session_(std::move(session)) {
    outbox_->attach(this);
  }

  void OnWriteDone(bool ok) override {
    outbox_->on_write_done(ok);
  }

  void OnCancel() override {
    outbox_->finish(cancelled("cancelled"));
  }

  void OnDone() override {
    outbox_->detach();
    if (session_)
      caf::anon_send_exit(session_, caf::exit_reason::user_shutdown);
    delete this;
  }

private:
  std::shared_ptr<watch_outbox> outbox_;
  caf::actor session_;
};

void watch_outbox::attach(watch_stream* r) {
  std::lock_guard<std::mutex> guard{mtx_};
  stream_ = r;
  if (pending_finish_ && !writing_) {
    auto status = std::move(*pending_finish_);
    pending_finish_.reset();
    finish_now_locked(std::move(status));
    return;
  }
  if (!over_ && !writing_)
    start_next_locked();
}

bool watch_outbox::push(std::string bytes) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (over_)
    return false;
  if (queue_.size() >= capacity_) {
    if (metrics_ != nullptr)
      metrics_->watch_dropped_slow_client.Increment();
    finish_locked(to_status(entity::make_rejection(
      v1::REJECTION_CODE_RESOURCE_EXHAUSTED, "",
      "watch: the client fell more than " + std::to_string(capacity_)
        + " changes behind; resubscribe")));
    return false;
  }
  grpc::Slice slice(bytes);
  queue_.emplace_back(&slice, 1);
  if (!writing_)
    start_next_locked();
  return true;
}

void watch_outbox::start_next_locked() {
  if (queue_.empty() || stream_ == nullptr)
    return;
  writing_ = true;
  stream_->StartWrite(&queue_.front());
}

void watch_outbox::finish(grpc::Status status) {
  std::lock_guard<std::mutex> guard{mtx_};
  finish_locked(std::move(status));
}

void watch_outbox::finish_locked(grpc::Status status) {
  if (finished_ || pending_finish_)
    return; // the first reason to end stands
  over_ = true;
  if (writing_ || stream_ == nullptr) {
    pending_finish_ = std::move(status);
    return;
  }
  finish_now_locked(std::move(status));
}

void watch_outbox::finish_now_locked(grpc::Status status) {
  if (finished_ || stream_ == nullptr)
    return;
  finished_ = true;
  stream_->Finish(std::move(status));
}

void watch_outbox::on_write_done(bool ok) {
  std::lock_guard<std::mutex> guard{mtx_};
  writing_ = false;
  if (!queue_.empty())
    queue_.pop_front();
  if (ok && metrics_ != nullptr)
    metrics_->watch_changes_sent.Increment();
  if (pending_finish_) {
    auto status = std::move(*pending_finish_);
    pending_finish_.reset();
    finish_now_locked(std::move(status));
    return;
  }
  if (!ok) {
    // The client is gone (possibly before OnCancel runs, which then finds
    // the stream over): end the RPC here, or it never ends.
    over_ = true;
    finish_now_locked(cancelled("the client is gone"));
    return;
  }
  if (!over_)
    start_next_locked();
}

/// One document to send: fetched by a query (`method` + `request`), or a
/// removal (no query).
struct watch_item {
  projection::change::kind_t kind = projection::change::user;
  int64_t position = 0;
  uint64_t tx = 0;
  std::string method;
  std::string request;
  std::string removed;
};

struct session_state {
  std::shared_ptr<watch_outbox> outbox;
  query_actor workers;
  projection::hub_actor hub;
  std::deque<watch_item> to_send;
  /// Changes that arrived before the subscription was confirmed.
  std::deque<watch_item> early;
  bool subscribed = false;
  std::size_t max_pending = 1024;
  bool busy = false;
  /// Failed reads of the current item (the database restarting, say).
  int read_failures = 0;
  static inline const char* name = "watch-session";
};

using session_pointer = caf::stateful_actor<session_state>*;

watch_item item_for(const projection::change& c) {
  watch_item item;
  item.kind = c.kind;
  item.position = c.position;
  item.tx = c.tx;
  switch (c.kind) {
    case projection::change::user: {
      v1::GetUserRequest r;
      r.set_user_id(c.subject);
      item.method = "GetUser";
      item.request = r.SerializeAsString();
      break;
    }
    case projection::change::shout:
    case projection::change::timeline_add:
    case projection::change::author_post: {
      v1::GetShoutRequest r;
      r.set_shout_id(c.kind == projection::change::shout ? c.subject : c.item);
      item.method = "GetShout";
      item.request = r.SerializeAsString();
      break;
    }
    case projection::change::timeline_remove:
    case projection::change::author_remove:
      item.removed = c.item;
      break;
    case projection::change::feed_added:
    case projection::change::feed_removed:
      // The hub consumes these and never forwards them.
      assert(!"a feed change reached a watch session");
      break;
  }
  return item;
}

void process_next(session_pointer self);

void send_change(session_pointer self, v1::DocumentChange change) {
  if (!self->state.outbox->push(change.SerializeAsString()))
    self->quit();
}

void done_with_item(session_pointer self) {
  self->state.to_send.pop_front();
  self->state.busy = false;
  self->state.read_failures = 0;
  process_next(self);
}

/// A document could not be read: try again (the database may be
/// restarting), and end the stream rather than skip a change for good.
constexpr int max_read_failures = 40;
constexpr auto read_retry = std::chrono::milliseconds(250);

void read_failed(session_pointer self, const std::string& why) {
  auto& st = self->state;
  if (++st.read_failures >= max_read_failures) {
    st.outbox->finish(to_status(
      entity::make_rejection(v1::REJECTION_CODE_UNAVAILABLE, "",
                             "watch: a changed document could not be read ("
                               + why + "); resubscribe")));
    self->quit();
    return;
  }
  if (st.read_failures == 1)
    log_warn("watch", "a document could not be read (" + why + "); retrying");
  self->delayed_send(self, read_retry, tick_atom::value);
}

void process_next(session_pointer self) {
  auto& st = self->state;
  if (st.busy || st.to_send.empty())
    return;
  auto& item = st.to_send.front();
  if (item.method.empty()) {
    v1::DocumentChange change;
    change.set_global_position(item.position);
    change.set_timeline_removed_shout_id(item.removed);
    send_change(self, std::move(change));
    done_with_item(self);
    return;
  }
  st.busy = true;
  // A timeline entry comes from the timelines projection; the shout it
  // names is read from the shouts projection, which may not be there yet.
  bool needs_shout = item.kind == projection::change::timeline_add
                     || item.kind == projection::change::author_post;
  if (needs_shout && item.tx != 0 && st.hub) {
    auto at = projection::cursor{item.tx, item.position};
    item.tx = 0; // awaited once; a timeout reads what is there
    auto again = [=] {
      self->state.busy = false;
      process_next(self);
    };
    self
      ->request(st.hub, std::chrono::seconds(10), await_atom::value,
                std::vector<std::string>{"shouts"}, at)
      .then([=](bool) { again(); }, [=](caf::error&) { again(); });
    return;
  }
  auto kind = item.kind;
  auto position = item.position;
  auto method = item.method;
  self
    ->request(st.workers, std::chrono::seconds(10), query_atom::value,
              item.method, item.request)
    .then(
      [=](query_answer& a) {
        if (a.kind == query_answer::ok) {
          v1::DocumentChange change;
          change.set_global_position(position);
          if (method == "GetUser") {
            change.mutable_user()->ParseFromString(a.bytes);
            send_change(self, std::move(change));
          } else if (method == "GetShout") {
            auto* shout = kind == projection::change::shout
                            ? change.mutable_shout()
                            : change.mutable_timeline_entry();
            shout->ParseFromString(a.bytes);
            send_change(self, std::move(change));
          } else if (method == "GetTimeline") {
            v1::TimelinePage page;
            page.ParseFromString(a.bytes);
            for (auto& s : page.shouts()) {
              v1::DocumentChange entry;
              *entry.mutable_timeline_entry() = s;
              send_change(self, std::move(entry));
            }
          }
        }
        done_with_item(self);
      },
      [=](caf::error& err) { read_failed(self, self->system().render(err)); });
}

/// The current documents of a subscription, to send before any change.
std::deque<watch_item> initial_items(const projection::subscription& sub) {
  std::deque<watch_item> items;
  for (auto& id : sub.user_ids)
    items.push_back(item_for({projection::change::user, id, {}, 0, 0}));
  for (auto& id : sub.shout_ids)
    items.push_back(item_for({projection::change::shout, id, {}, 0, 0}));
  if (!sub.timeline_owner.empty()) {
    v1::GetTimelineRequest r;
    r.set_user_id(sub.timeline_owner);
    watch_item item;
    item.method = "GetTimeline";
    item.request = r.SerializeAsString();
    items.push_back(std::move(item));
  }
  return items;
}

caf::behavior session(session_pointer self, std::shared_ptr<watch_outbox> out,
                      query_actor workers, projection::hub_actor hub,
                      projection::subscription sub) {
  auto& st = self->state;
  st.outbox = std::move(out);
  st.workers = std::move(workers);
  st.hub = hub;
  auto refuse = [=](const caf::error& err) {
    self->state.outbox->finish(to_status(entity::make_rejection(
      v1::REJECTION_CODE_UNAVAILABLE, "",
      "watch: could not subscribe: " + self->system().render(err))));
    self->quit();
  };
  // Subscribe first and read the current documents once the hub confirms:
  // a change between the two is sent after them, never lost.
  auto subscribe = [=](const projection::subscription& s,
                       std::function<void()> then) {
    self
      ->request(hub, std::chrono::seconds(10), subscribe_atom::value,
                caf::actor_cast<caf::actor>(self), s)
      .then([=](bool) { then(); }, [=](caf::error& err) { refuse(err); });
  };
  auto start_sending = [=] {
    auto& st = self->state;
    st.subscribed = true;
    st.to_send = initial_items(sub);
    for (auto& item : st.early)
      st.to_send.push_back(std::move(item));
    st.early.clear();
    process_next(self);
  };
  // A timeline also follows the feeds of the authors its owner follows:
  // shouts of authors above the celebrity threshold are not fanned out.
  // The following list is read once the timeline is subscribed, so the hub
  // sees every follow after that read (watch_hub.hpp).
  if (sub.timeline_owner.empty()) {
    subscribe(sub, start_sending);
  } else {
    auto read_feeds = [=] {
      self
        ->request(self->state.workers, std::chrono::seconds(10),
                  following_atom::value, sub.timeline_owner)
        .then(
          [=](std::vector<std::string>& authors) {
            projection::subscription feeds;
            feeds.author_feeds = std::move(authors);
            subscribe(feeds, start_sending);
          },
          [=](caf::error& err) { refuse(err); });
    };
    subscribe(sub, read_feeds);
  }
  return {
    [=](change_atom, const projection::change& c) {
      auto& st = self->state;
      if (!st.subscribed) {
        st.early.push_back(item_for(c));
        return;
      }
      if (st.to_send.size() >= st.max_pending) {
        if (auto* m = st.outbox->metrics())
          m->watch_dropped_backlog.Increment();
        st.outbox->finish(to_status(entity::make_rejection(
          v1::REJECTION_CODE_RESOURCE_EXHAUSTED, "",
          "watch: too many changes pending; resubscribe")));
        self->quit();
        return;
      }
      st.to_send.push_back(item_for(c));
      process_next(self);
    },
    [=](tick_atom) {
      // Read the current item again (read_failed).
      self->state.busy = false;
      process_next(self);
    },
    [=](lost_atom, const std::string& why) {
      // The hub cannot vouch for every change any more (a node failed
      // between a commit and its broadcast): end the stream rather than
      // skip one silently.
      self->state.outbox->finish(to_status(entity::make_rejection(
        v1::REJECTION_CODE_UNAVAILABLE, "", "watch: " + why)));
      self->quit();
    },
  };
}

} // namespace

grpc::ServerWriteReactor<grpc::ByteBuffer>*
start_watch(caf::actor_system& sys, query_actor workers,
            projection::hub_actor hub, std::size_t watch_buffer,
            query_metrics* metrics, const grpc::ByteBuffer* request) {
  auto outbox = std::make_shared<watch_outbox>(watch_buffer, metrics);
  auto refuse = [&](grpc::Status status) {
    outbox->finish(std::move(status));
    return new watch_stream(outbox, caf::actor{});
  };
  v1::WatchRequest req;
  auto bad = read_request(*request, &req);
  for (auto& id : req.user_ids())
    if (!bad)
      bad = user::check_user_id("user_ids", id);
  for (auto& id : req.shout_ids())
    if (!bad)
      bad = user::check_shout_id("shout_ids", id);
  if (!bad && !req.timeline_user_id().empty())
    bad = user::check_user_id("timeline_user_id", req.timeline_user_id());
  if (!bad && req.user_ids().empty() && req.shout_ids().empty()
      && req.timeline_user_id().empty())
    bad = entity::make_rejection(v1::REJECTION_CODE_INVALID_ARGUMENT,
                                 "user_ids",
                                 "user_ids: name at least one subject "
                                 "(user_ids, shout_ids or timeline_user_id)");
  if (!bad && req.user_ids_size() + req.shout_ids_size() > 1000)
    bad = entity::make_rejection(v1::REJECTION_CODE_INVALID_ARGUMENT,
                                 "user_ids",
                                 "user_ids: at most 1000 subjects per stream");
  if (bad)
    return refuse(to_status(*bad));
  if (!hub)
    return refuse(
      to_status(entity::make_rejection(v1::REJECTION_CODE_UNAVAILABLE, "",
                                       "watch: this node has no watch hub")));
  projection::subscription sub;
  sub.user_ids.assign(req.user_ids().begin(), req.user_ids().end());
  sub.shout_ids.assign(req.shout_ids().begin(), req.shout_ids().end());
  sub.timeline_owner = req.timeline_user_id();
  auto session_actor = sys.spawn(session, outbox, workers, hub, sub);
  return new watch_stream(outbox, session_actor);
}

} // namespace shoutflow::services
