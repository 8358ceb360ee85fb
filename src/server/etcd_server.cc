#include "server/etcd_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"
#include "server/errors.h"
#include "server/ids.h"
#include "spdlog/spdlog.h"

namespace etcdpp::server {
namespace {

namespace fs = std::filesystem;

// Store meta: the raft membership as of the applied index.
constexpr char kMetaConfState[] = "raft_conf_state";

std::shared_ptr<spdlog::logger> Log() {
  auto l = spdlog::get("etcdserver");
  return l ? l : spdlog::default_logger();
}

absl::Status FsyncPath(const std::string& path, bool directory) {
  int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", std::strerror(errno)));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return absl::InternalError(absl::StrCat("fsync ", path, ": ", std::strerror(errno)));
  return absl::OkStatus();
}

// member/identity: "key=value" lines, written atomically (temp file, fsync,
// rename, fsync of the directory). Holds what must not change across
// restarts even if the flags do: member and cluster IDs, and the term.
absl::StatusOr<std::map<std::string, std::string>> ReadIdentity(const std::string& path) {
  std::map<std::string, std::string> out;
  std::ifstream in(path);
  if (!in) return out;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty()) continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) {
      return absl::DataLossError(absl::StrCat(path, ":", lineno, ": malformed line"));
    }
    out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

absl::Status WriteIdentity(const std::string& path, const std::map<std::string, std::string>& kv) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    for (const auto& [k, v] : kv) out << k << "=" << v << "\n";
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat("write ", tmp, " failed"));
  }
  ETCDPP_RETURN_IF_ERROR(FsyncPath(tmp, false));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, ": ", std::strerror(errno)));
  }
  return FsyncPath(fs::path(path).parent_path().string(), true);
}

uint64_t ParseHex(const std::string& s) {
  uint64_t v = 0;
  for (char c : s) {
    v <<= 4;
    if (c >= '0' && c <= '9') v |= c - '0';
    else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
  }
  return v;
}

// Runs a physical compaction's callback once both the apply batch is
// durable and the history is gone, whichever happens last.
struct CompactionWaiter {
  absl::Mutex mu;
  int remaining = 2;
  ApplyResult result;
  EtcdServer::Done done;
  void Arrive() {
    bool fire;
    {
      absl::MutexLock l(&mu);
      fire = --remaining == 0;
    }
    if (fire) done(std::move(result));
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdServer>> EtcdServer::Start(const ServerConfig& config) {
  std::unique_ptr<EtcdServer> s(new EtcdServer(config));
  ETCDPP_RETURN_IF_ERROR(s->Init());
  s->apply_thread_ = std::thread([p = s.get()] { p->ApplyLoop(); });
  s->lease_thread_ = std::thread([p = s.get()] { p->LeaseExpiryLoop(); });
  // Serve once there is a leader and what was committed before the start
  // is applied (etcd announces readiness after it published itself through
  // Raft). Bounded: a member of a cluster without quorum serves anyway and
  // its requests wait for a leader.
  auto give_up = std::chrono::steady_clock::now() +
                 std::max(std::chrono::milliseconds(5000),
                          std::chrono::milliseconds(10 * config.election_ms));
  while (std::chrono::steady_clock::now() < give_up) {
    if (s->raft_->lead() != 0 && s->applied_index_.load() >= s->raft_->commit_index()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return s;
}

absl::Status EtcdServer::Init() {
  const std::string member_dir = config_.data_dir + "/member";
  std::error_code ec;
  fs::create_directories(member_dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create data dir ", member_dir, ": ", ec.message()));
  }
  auto lock = FileLock::Acquire(member_dir + "/etcdpp.lock");
  if (!lock.ok()) {
    return absl::UnavailableError(absl::StrCat("data dir ", config_.data_dir,
                                               " is in use by another process (",
                                               lock.status().message(), ")"));
  }
  lock_ = std::move(*lock);

  // Who we are: from the flags on first start, from member/identity after.
  auto it = config_.initial_cluster.find(config_.name);
  if (it == config_.initial_cluster.end()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "couldn't find local name \"", config_.name, "\" in the initial cluster configuration"));
  }
  if (config_.initial_cluster.size() > 1) {
    return absl::UnimplementedError(
        "--initial-cluster names more than one member: multi-member clusters are not supported by "
        "etcdpp yet");
  }
  std::vector<std::string> advertised;
  for (const auto& u : config_.initial_advertise_peer_urls) advertised.push_back(u.original);
  std::vector<std::string> in_cluster = it->second;
  std::sort(advertised.begin(), advertised.end());
  std::sort(in_cluster.begin(), in_cluster.end());
  if (advertised != in_cluster) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--initial-cluster has ", config_.name, "=", absl::StrJoin(it->second, ","),
        " but missing from --initial-advertise-peer-urls=", absl::StrJoin(advertised, ",")));
  }

  const std::string identity_path = member_dir + "/identity";
  ETCDPP_ASSIGN_OR_RETURN(auto identity, ReadIdentity(identity_path));
  if (identity.count("member_id")) {
    member_id_ = ParseHex(identity["member_id"]);
    cluster_id_ = ParseHex(identity["cluster_id"]);
  } else {
    member_id_ = ComputeMemberId(it->second, config_.initial_cluster_token);
    cluster_id_ = ComputeClusterId({member_id_});
    identity["member_id"] = IdToHex(member_id_);
    identity["cluster_id"] = IdToHex(cluster_id_);
    identity["name"] = config_.name;
    identity["peer_urls"] = absl::StrJoin(it->second, ",");
  }
  identity.erase("term");  // written by etcdpp 0.1 before Raft kept the term
  ETCDPP_RETURN_IF_ERROR(WriteIdentity(identity_path, identity));

  self_.id = member_id_;
  self_.name = config_.name;
  self_.peer_urls = it->second;
  for (const auto& u : config_.advertise_client_urls) self_.client_urls.push_back(u.original);

  Log()->info("starting member {} in cluster {}", IdToHex(member_id_), IdToHex(cluster_id_));
  mvcc::Options opts;
  opts.path = member_dir + "/db";
  auto store = mvcc::Store::Open(opts);
  if (!store.ok()) {
    return absl::Status(store.status().code(),
                        absl::StrCat("opening the store at ", opts.path, ": ",
                                     store.status().message()));
  }
  store_ = std::move(*store);
  // Leases: rebuilt from the store; nothing expires until this member leads.
  lease::Options lo;
  lo.clock = SystemClock::Default();
  // etcd: the minimum TTL is 1.5 election timeouts, rounded up to seconds.
  lo.min_ttl_seconds = (3 * config_.election_ms / 2 + 999) / 1000;
  lessor_ = std::make_unique<lease::Lessor>(lo);
  ETCDPP_ASSIGN_OR_RETURN(std::vector<mvcc::LeaseData> leases, store_->LoadLeases());
  std::vector<lease::LeaseRecord> records;
  for (const auto& l : leases) records.push_back({l.id, l.ttl, l.remaining_ttl});
  lessor_->Recover(records);
  for (const auto& l : leases) {
    for (const auto& k : l.keys) ETCDPP_CHECK_OK(lessor_->Attach(l.id, k));
  }
  applier_ = std::make_unique<Applier>(store_.get(), lessor_.get());
  mvcc::WatchHubOptions watch_opts;
  watch_opts.progress_notify_interval_ms = config_.watch_progress_notify_interval_ms;
  watch_opts.fragment_bytes = config_.max_request_bytes + 512 * 1024;  // etcd's grpcOverheadBytes
  watch_hub_ = std::make_unique<mvcc::WatchHub>(mvcc::MakeStoreHistory(store_.get()),
                                                store_->CurrentRevision(),
                                                SystemClock::Default(), watch_opts);
  watch_hub_->Start();
  applied_index_ = store_->ConsistentIndex();
  last_log_compaction_ = applied_index_;
  durable_rev_ = store_->CurrentRevision();
  db_size_bytes_ = store_->SizeBytes();
  Log()->info("recovered store: revision {}, compacted revision {}, applied index {}",
              store_->CurrentRevision(), store_->CompactedRevision(), applied_index_.load());

  // Raft does not replay conf changes at or below the applied index: the
  // membership as of that index was recorded beside it.
  ETCDPP_ASSIGN_OR_RETURN(std::optional<std::string> cs, store_->GetMeta(kMetaConfState));
  if (cs && !conf_state_.ParseFromString(*cs)) {
    return absl::DataLossError(absl::StrCat("corrupt raft membership in the store at ", opts.path));
  }
  id_gen_ = std::make_unique<IdGenerator>(
      member_id_, std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
  RaftNode::Options ro;
  ro.id = member_id_;
  ro.wal_dir = member_dir + "/wal";
  ro.wal_metadata = absl::StrCat("member_id=", IdToHex(member_id_), " cluster_id=",
                                 IdToHex(cluster_id_));
  ro.bootstrap_voters = {member_id_};
  ro.applied_index = applied_index_.load();
  ro.applied_conf_state = conf_state_;
  ro.tick_interval = std::chrono::milliseconds(config_.heartbeat_ms);
  ro.election_ticks = static_cast<int>(config_.election_ms / config_.heartbeat_ms);
  ro.clock = SystemClock::Default();
  ro.wal_options.max_wals = config_.max_wals;
  ro.on_leader_change = [this](uint64_t lead, uint64_t term) {
    // Only the leader's clock decides expiry; a new leader gives every lease
    // an election timeout more, so a failover expires none that was kept alive.
    if (lead == member_id_) {
      lessor_->Promote(std::chrono::milliseconds(config_.election_ms));
    } else {
      lessor_->Demote();
    }
  };
  ro.on_committed = [this](std::vector<raftpb::Entry> entries) {
    absl::MutexLock l(&mu_);
    for (auto& e : entries) committed_.push_back(std::move(e));
  };
  auto raft = RaftNode::Start(std::move(ro));
  if (!raft.ok()) {
    return absl::Status(raft.status().code(),
                        absl::StrCat("starting raft: ", raft.status().message()));
  }
  raft_ = std::move(*raft);
  return absl::OkStatus();
}

EtcdServer::~EtcdServer() { Stop(); }

void EtcdServer::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_ && !apply_thread_.joinable() && !raft_) return;
    stopping_ = true;
  }
  // The apply loop finishes what is already committed (it may still need the
  // node loop for a conf change), then the node loop stops and closes the WAL.
  if (lease_thread_.joinable()) lease_thread_.join();
  if (apply_thread_.joinable()) apply_thread_.join();
  if (raft_) {
    raft_->Stop();
    raft_.reset();
  }
  if (watch_hub_) watch_hub_->Stop();
  FailAllWaiters(EtcdError(kErrStopped));
}

int64_t EtcdServer::NewLeaseId() {
  for (;;) {
    int64_t id = static_cast<int64_t>(id_gen_->Next() & ((uint64_t{1} << 63) - 1));
    if (id != lease::kNoLease && !lessor_->Exists(id)) return id;
  }
}

void EtcdServer::LeaseExpiryLoop() {
  // etcd checks twice a second and revokes at most leaseRevokeRate/2 leases
  // each time, so a mass expiry cannot flood the log.
  constexpr size_t kRevokesPerRound = 500;
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(500))) return;
    }
    for (lease::LeaseId id : lessor_->FindExpired(kRevokesPerRound)) {
      internalpb::InternalRequest req;
      req.mutable_lease_revoke()->set_id(id);
      Propose(std::move(req), [id](ApplyResult r) {
        // Already revoked by its holder, or lost with a leader change: the
        // lessor offers it again later if it is still there.
        if (!r.status.ok()) {
          Log()->debug("revoking expired lease {:x}: {}", id, std::string(r.status.message()));
        }
      });
    }
  }
}

EtcdServer::Done EtcdServer::TakeWaiter(uint64_t id) {
  absl::MutexLock l(&wait_mu_);
  auto it = waiters_.find(id);
  if (it == waiters_.end()) return nullptr;
  Done d = std::move(it->second);
  waiters_.erase(it);
  return d;
}

void EtcdServer::FailAllWaiters(absl::Status status) {
  absl::flat_hash_map<uint64_t, Done> waiters;
  {
    absl::MutexLock l(&wait_mu_);
    waiters.swap(waiters_);
  }
  for (auto& [id, done] : waiters) {
    ApplyResult r;
    r.status = status;
    done(std::move(r));
  }
}

void EtcdServer::Propose(internalpb::InternalRequest req, Done done) {
  const uint64_t id = id_gen_->Next();
  req.set_id(id);
  auto fail = [&done](absl::string_view err) {
    ApplyResult r;
    r.status = EtcdError(err);
    done(std::move(r));
  };
  std::string data = req.SerializeAsString();
  if (static_cast<int64_t>(data.size()) > config_.max_request_bytes) return fail(kErrRequestTooLarge);
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return fail(kErrStopped);
  }
  {
    absl::MutexLock l(&wait_mu_);
    waiters_.emplace(id, std::move(done));
  }
  raft_->Propose(std::move(data), [this, id](absl::Status) {
    // Raft had no leader to take it (or a leader transfer is under way).
    if (Done d = TakeWaiter(id)) {
      ApplyResult r;
      r.status = EtcdError(kErrNoLeader);
      d(std::move(r));
    }
  });
}

void EtcdServer::ApplyConfChangeEntry(const raftpb::Entry& e) {
  raftpb::ConfChange cc;
  ETCDPP_CHECK(cc.ParseFromString(e.data()));  // committed data that does not parse is a bug
  conf_state_ = raft_->ApplyConfChange(cc);
  auto txn = store_->BeginWrite();
  txn->SetMeta(kMetaConfState, conf_state_.SerializeAsString());
  ETCDPP_CHECK_OK(txn->Commit(e.index()).status());
}

void EtcdServer::ApplyLoop() {
  for (;;) {
    std::deque<raftpb::Entry> batch;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](EtcdServer* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->stopping_ || !s->committed_.empty();
          },
          this));
      // Apply what was committed before the stop; the rest replays from the
      // WAL at the next start.
      if (committed_.empty()) return;
      batch.swap(committed_);
    }
    std::vector<std::pair<Done, ApplyResult>> finished;
    std::vector<std::shared_ptr<CompactionWaiter>> compactions;
    std::vector<mvccpb::Event> watch_events;
    for (raftpb::Entry& e : batch) {
      const uint64_t index = e.index();
      if (index <= applied_index_.load()) continue;  // applied before a restart
      if (e.type() == raftpb::EntryConfChange) {
        ApplyConfChangeEntry(e);
        applied_index_ = index;
        continue;
      }
      if (e.data().empty()) {
        // A new leader's empty entry: only its index is recorded.
        ETCDPP_CHECK_OK(store_->BeginWrite()->Commit(index).status());
        applied_index_ = index;
        continue;
      }
      internalpb::InternalRequest req;
      ETCDPP_CHECK(req.ParseFromString(e.data()));
      // Proposed here and still waited for? (After a restart, or for a
      // request another member proposed, nobody waits.)
      Done done = TakeWaiter(req.id());
      std::shared_ptr<CompactionWaiter> waiter;
      std::function<void()> on_compacted;
      if (done && req.has_compaction() && req.compaction().physical()) {
        waiter = std::make_shared<CompactionWaiter>();
        on_compacted = [waiter] { waiter->Arrive(); };
      }
      ApplyResult r = req.has_alarm() ? ApplyAlarm(req.alarm())
                                      : applier_->Apply(req, index, on_compacted);
      applied_index_ = index;
      std::move(r.events.begin(), r.events.end(), std::back_inserter(watch_events));
      r.events.clear();
      if (!done) continue;
      if (waiter && r.status.ok()) {
        waiter->result = std::move(r);
        waiter->done = std::move(done);
        compactions.push_back(std::move(waiter));
      } else {
        finished.emplace_back(std::move(done), std::move(r));
      }
    }
    durable_rev_ = store_->CurrentRevision();
    // Watchers see a batch once it is applied; OnApplied only queues.
    watch_hub_->OnApplied(std::move(watch_events), durable_rev_.load());
    db_size_bytes_.store(store_->SizeBytes(), std::memory_order_relaxed);
    for (auto& [done, result] : finished) done(std::move(result));
    for (auto& w : compactions) w->Arrive();

    // Every --snapshot-count entries: make the store durable up to here and
    // let the node loop drop the log and the WAL segments this covers, so
    // neither memory nor restart time grows with the history.
    const uint64_t applied = applied_index_.load();
    if (applied - last_log_compaction_ >= config_.snapshot_count) {
      ETCDPP_CHECK_OK(store_->Sync());
      raft_->CompactLog(applied, conf_state_);
      last_log_compaction_ = applied;
    }
  }
}

absl::Status EtcdServer::Range(const etcdserverpb::RangeRequest& r,
                               etcdserverpb::RangeResponse* resp) {
  return applier_->Range(r, durable_rev_.load(), resp);
}

void EtcdServer::FillHeader(etcdserverpb::ResponseHeader* h, bool with_revision) const {
  h->set_cluster_id(cluster_id_);
  h->set_member_id(member_id_);
  h->set_raft_term(raft_ ? raft_->term() : 0);
  if (with_revision && h->revision() == 0) h->set_revision(durable_rev_.load());
}

ApplyResult EtcdServer::ApplyAlarm(const etcdserverpb::AlarmRequest& req) {
  // Alarms live in memory for now; etcd persists them in its backend.
  ApplyResult r;
  absl::MutexLock l(&alarm_mu_);
  auto same = [&](const etcdserverpb::AlarmMember& m) {
    return m.memberid() == req.memberid() && m.alarm() == req.alarm();
  };
  auto it = std::find_if(alarms_.begin(), alarms_.end(), same);
  switch (req.action()) {
    case etcdserverpb::AlarmRequest::ACTIVATE: {
      if (req.alarm() == etcdserverpb::NONE) break;
      if (it == alarms_.end()) {
        etcdserverpb::AlarmMember m;
        m.set_memberid(req.memberid());
        m.set_alarm(req.alarm());
        alarms_.push_back(m);
        std::sort(alarms_.begin(), alarms_.end(), [](const auto& a, const auto& b) {
          return std::make_pair(a.memberid(), a.alarm()) < std::make_pair(b.memberid(), b.alarm());
        });
        Log()->warn("alarm {} raised by member {}", etcdserverpb::AlarmType_Name(req.alarm()),
                    IdToHex(req.memberid()));
        *r.alarm.add_alarms() = m;
      } else {
        *r.alarm.add_alarms() = *it;
      }
      break;
    }
    case etcdserverpb::AlarmRequest::DEACTIVATE:
      if (it != alarms_.end()) {
        *r.alarm.add_alarms() = *it;
        alarms_.erase(it);
        Log()->info("alarm {} disarmed for member {}", etcdserverpb::AlarmType_Name(req.alarm()),
                    IdToHex(req.memberid()));
      }
      break;
    default:
      for (const auto& m : alarms_) *r.alarm.add_alarms() = m;
      break;
  }
  return r;
}

std::vector<etcdserverpb::AlarmMember> EtcdServer::Alarms() const {
  absl::MutexLock l(&alarm_mu_);
  return alarms_;
}

bool EtcdServer::NoSpaceAlarmed() const {
  absl::MutexLock l(&alarm_mu_);
  for (const auto& m : alarms_) {
    if (m.alarm() == etcdserverpb::NOSPACE) return true;
  }
  return false;
}

void EtcdServer::RaiseNoSpace() {
  internalpb::InternalRequest req;
  req.mutable_alarm()->set_action(etcdserverpb::AlarmRequest::ACTIVATE);
  req.mutable_alarm()->set_memberid(member_id_);
  req.mutable_alarm()->set_alarm(etcdserverpb::NOSPACE);
  Propose(std::move(req), [](ApplyResult) {});
}

void EtcdServer::FillStatus(etcdserverpb::StatusResponse* resp) const {
  FillHeader(resp->mutable_header());
  resp->set_version(kEtcdApiVersion);
  resp->set_dbsize(store_->SizeBytes());
  resp->set_dbsizeinuse(store_->SizeInUseBytes());
  resp->set_leader(raft_ ? raft_->lead() : 0);
  resp->set_raftindex(raft_ ? raft_->commit_index() : 0);
  resp->set_raftterm(raft_ ? raft_->term() : 0);
  resp->set_raftappliedindex(applied_index_.load());
  resp->set_islearner(false);
  // etcd lists each alarm in its protobuf text form, e.g.
  // "memberID:10276657743932975437 alarm:NOSPACE " (trailing space included).
  for (const auto& m : Alarms()) {
    resp->add_errors(absl::StrCat("memberID:", m.memberid(), " alarm:",
                                  etcdserverpb::AlarmType_Name(m.alarm()), " "));
  }
}

std::vector<MemberInfo> EtcdServer::Members() const { return {self_}; }

}  // namespace etcdpp::server
