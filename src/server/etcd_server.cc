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
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/failpoints.h"
#include "common/status.h"
#include "server/errors.h"
#include "server/ids.h"
#include "spdlog/spdlog.h"

namespace etcdpp::server {
namespace {

namespace fs = std::filesystem;

// Store meta: the raft membership as of the applied index.
constexpr char kMetaConfState[] = "raft_conf_state";
// Store meta: the cluster membership (internalpb.Membership) as of the applied index.
constexpr char kMetaMembers[] = "members";
// member/db_path: which directory under member/ holds the current store
// ("db" until a snapshot from the leader replaced it).
constexpr char kDbPathFile[] = "db_path";
// etcd's HealthInterval: a peer counts as connected once up this long.
constexpr int64_t kHealthIntervalMs = 5000;

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

// Writes `content` to `path` atomically: a temp file, fsync, rename, fsync
// of the directory.
absl::Status WriteFileAtomically(const std::string& path, const std::string& content) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << content;
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat("write ", tmp, " failed"));
  }
  ETCDPP_RETURN_IF_ERROR(FsyncPath(tmp, false));
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", tmp, ": ", std::strerror(errno)));
  }
  return FsyncPath(fs::path(path).parent_path().string(), true);
}

absl::Status WriteIdentity(const std::string& path, const std::map<std::string, std::string>& kv) {
  std::string content;
  for (const auto& [k, v] : kv) absl::StrAppend(&content, k, "=", v, "\n");
  return WriteFileAtomically(path, content);
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
  s->read_thread_ = std::thread([p = s.get()] { p->ReadLoop(); });
  s->housekeeping_thread_ = std::thread([p = s.get()] { p->HousekeepingLoop(); });
  return s;
}

bool EtcdServer::WaitReady() {
  // Bounded: a member of a cluster without quorum serves anyway and its
  // requests wait for a leader.
  auto give_up = std::chrono::steady_clock::now() +
                 std::max(std::chrono::milliseconds(5000),
                          std::chrono::milliseconds(10 * config_.election_ms));
  while (std::chrono::steady_clock::now() < give_up) {
    // The publish is applied here, so a member that joined has caught up
    // with the log at least that far (the housekeeping thread proposes it).
    if (published_.load() && raft_->lead() != 0 &&
        applied_index_.load() >= raft_->commit_index()) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return published_.load();
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

  member_dir_ = member_dir;
  std::vector<std::string> advertised;
  for (const auto& u : config_.initial_advertise_peer_urls) advertised.push_back(u.original);

  // Who we are: from the flags (or the cluster we join) on first start,
  // from member/identity after.
  const std::string identity_path = member_dir + "/identity";
  ETCDPP_ASSIGN_OR_RETURN(auto identity, ReadIdentity(identity_path));
  std::vector<uint64_t> bootstrap_voters;
  internalpb::Membership initial;
  const bool restart = identity.count("member_id") > 0;
  if (restart) {
    member_id_ = ParseHex(identity["member_id"]);
    cluster_id_ = ParseHex(identity["cluster_id"]);
  } else {
    auto it = config_.initial_cluster.find(config_.name);
    if (it == config_.initial_cluster.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "couldn't find local name \"", config_.name, "\" in the initial cluster configuration"));
    }
    std::vector<std::string> in_cluster = it->second;
    std::vector<std::string> adv_sorted = advertised;
    std::sort(adv_sorted.begin(), adv_sorted.end());
    std::sort(in_cluster.begin(), in_cluster.end());
    if (adv_sorted != in_cluster) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--initial-cluster has ", config_.name, "=", absl::StrJoin(it->second, ","),
          " but missing from --initial-advertise-peer-urls=", absl::StrJoin(advertised, ",")));
    }
    if (config_.initial_cluster_state == "existing") {
      // Join: learn the cluster (and our ID, given by member add) from the
      // members named in --initial-cluster.
      std::vector<std::string> others;
      for (const auto& [name, urls] : config_.initial_cluster) {
        if (name != config_.name) others.insert(others.end(), urls.begin(), urls.end());
      }
      if (others.empty()) {
        return absl::InvalidArgumentError(
            "--initial-cluster-state is existing but --initial-cluster names no other member");
      }
      ETCDPP_ASSIGN_OR_RETURN(peerpb::MembersResponse resp, peer::FetchMembers(others, 5000));
      Membership remote;
      remote.Reset(resp.membership());
      auto me = remote.FindByPeerUrls(it->second);
      // etcd compares --initial-cluster with the cluster member by member.
      std::vector<std::string> described;
      for (const auto& m : remote.Members()) {
        described.push_back(absl::StrCat("{ID:", IdToHex(m.id()), " Name:", m.name(),
                                         " PeerURLs:[", absl::StrJoin(m.peer_urls(), " "), "]}"));
      }
      const std::string existing = absl::StrCat("{ClusterID:", IdToHex(resp.cluster_id()),
                                                " Members:[", absl::StrJoin(described, " "), "]}");
      if (remote.Members().size() != config_.initial_cluster.size()) {
        return absl::FailedPreconditionError(
            absl::StrCat("error validating peerURLs ", existing, ": member count is unequal"));
      }
      if (!me) {
        return absl::FailedPreconditionError(absl::StrCat(
            "error validating peerURLs ", existing, ": PeerURLs: no match found for existing member (",
            absl::StrJoin(it->second, ","), ")"));
      }
      member_id_ = me->id();
      cluster_id_ = resp.cluster_id();
      initial = resp.membership();
    } else {
      std::vector<uint64_t> ids;
      for (const auto& [name, urls] : config_.initial_cluster) {
        internalpb::Member* m = initial.add_members();
        m->set_id(ComputeMemberId(urls, config_.initial_cluster_token));
        for (const auto& u : urls) m->add_peer_urls(u);
        ids.push_back(m->id());
        if (name == config_.name) member_id_ = m->id();
      }
      cluster_id_ = ComputeClusterId(ids);
      bootstrap_voters = ids;
    }
    // Our own name and client URLs are known at once; the others' arrive
    // when they publish them.
    for (auto& m : *initial.mutable_members()) {
      if (m.id() != member_id_) continue;
      m.set_name(config_.name);
      m.clear_client_urls();
      for (const auto& u : config_.advertise_client_urls) m.add_client_urls(u.original);
    }
    identity["member_id"] = IdToHex(member_id_);
    identity["cluster_id"] = IdToHex(cluster_id_);
    identity["name"] = config_.name;
    identity["peer_urls"] = absl::StrJoin(it->second, ",");
  }
  identity.erase("term");  // written by etcdpp 0.1 before Raft kept the term
  ETCDPP_RETURN_IF_ERROR(WriteIdentity(identity_path, identity));

  self_.id = member_id_;
  self_.name = config_.name;
  self_.peer_urls = absl::StrSplit(identity["peer_urls"], ',', absl::SkipEmpty());
  for (const auto& u : config_.advertise_client_urls) self_.client_urls.push_back(u.original);

  Log()->info("starting member {} in cluster {}", IdToHex(member_id_), IdToHex(cluster_id_));
  ETCDPP_RETURN_IF_ERROR(OpenStore());
  // Leases: rebuilt from the store; nothing expires until this member leads.
  lease::Options lo;
  lo.clock = SystemClock::Default();
  // etcd: the minimum TTL is 1.5 election timeouts, rounded up to seconds.
  lo.min_ttl_seconds = (3 * config_.election_ms / 2 + 999) / 1000;
  lo.checkpointing = config_.enable_lease_checkpoint;
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
  visible_index_ = applied_index_.load();
  db_size_bytes_ = store_->SizeBytes();
  Log()->info("recovered store: revision {}, compacted revision {}, applied index {}",
              store_->CurrentRevision(), store_->CompactedRevision(), applied_index_.load());

  // Raft does not replay conf changes at or below the applied index: the
  // membership as of that index was recorded beside it.
  ETCDPP_ASSIGN_OR_RETURN(std::optional<std::string> cs, store_->GetMeta(kMetaConfState));
  if (cs && !conf_state_.ParseFromString(*cs)) {
    return absl::DataLossError(absl::StrCat("corrupt raft membership in the store at ", store_dir_));
  }
  raft_conf_ = conf_state_;
  // The members: as recorded beside the applied index; on first start from
  // the flags (or the cluster joined); a member of etcdpp 0.1 (single
  // member, nothing recorded) is itself.
  ETCDPP_ASSIGN_OR_RETURN(std::optional<std::string> members, store_->GetMeta(kMetaMembers));
  if (members) {
    if (!initial.ParseFromString(*members)) {
      return absl::DataLossError(absl::StrCat("corrupt membership in the store at ", store_dir_));
    }
  } else if (restart) {
    internalpb::Member* m = initial.add_members();
    m->set_id(member_id_);
    for (const auto& u : self_.peer_urls) m->add_peer_urls(u);
  }
  membership_.Reset(initial);
  if (membership_.IsRemoved(member_id_)) {
    // etcd: a removed member that restarts says so and exits (status 0).
    return absl::AbortedError(peer::kMemberRemovedText);
  }
  peer::PeerTransportOptions po;
  po.member_id = member_id_;
  po.cluster_id = cluster_id_;
  po.snapshot_dir = member_dir + "/snap";
  fs::create_directories(po.snapshot_dir, ec);
  transport_ = std::make_unique<peer::PeerTransport>(po, this);
  SyncPeers();
  id_gen_ = std::make_unique<IdGenerator>(
      member_id_, std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count());
  RaftNode::Options ro;
  ro.id = member_id_;
  ro.wal_dir = member_dir + "/wal";
  ro.wal_metadata = absl::StrCat("member_id=", IdToHex(member_id_), " cluster_id=",
                                 IdToHex(cluster_id_));
  ro.bootstrap_voters = bootstrap_voters;
  ro.force_new_cluster = config_.force_new_cluster;
  ro.transport = transport_.get();
  ro.applied_index = applied_index_.load();
  ro.applied_conf_state = conf_state_;
  ro.tick_interval = std::chrono::milliseconds(config_.heartbeat_ms);
  ro.election_ticks = static_cast<int>(config_.election_ms / config_.heartbeat_ms);
  ro.pre_vote = config_.pre_vote;
  ro.clock = SystemClock::Default();
  ro.wal_options.max_wals = config_.max_wals;
  // etcd keeps 5000 entries after a log compaction for slow followers; a
  // smaller --snapshot-count keeps fewer (no more than it compacts), so a
  // follower that missed more than that gets a snapshot.
  ro.catch_up_entries = std::min<uint64_t>(5000, config_.snapshot_count);
  ro.on_leader_change = [this](uint64_t lead, uint64_t term) {
    // Only the leader's clock decides expiry; a new leader gives every lease
    // an election timeout more, so a failover expires none that was kept alive.
    if (lead == member_id_) {
      lessor_->Promote(std::chrono::milliseconds(config_.election_ms));
      lessor_term_.store(term);
    } else {
      lessor_term_.store(0);
      lessor_->Demote();
    }
  };
  ro.on_committed = [this](std::vector<raftpb::Entry> entries) {
    absl::MutexLock l(&mu_);
    for (auto& e : entries) committed_.push_back(ApplyItem{std::move(e), std::nullopt});
  };
  ro.on_snapshot = [this](raftpb::Snapshot snap) {
    absl::MutexLock l(&mu_);
    committed_.push_back(ApplyItem{raftpb::Entry(), std::move(snap)});
  };
  ro.on_read_states = [this](std::vector<raft::ReadState> rs) { OnReadStates(std::move(rs)); };
  auto raft = RaftNode::Start(std::move(ro));
  if (!raft.ok()) {
    return absl::Status(raft.status().code(),
                        absl::StrCat("starting raft: ", raft.status().message()));
  }
  raft_ = std::move(*raft);
  return absl::OkStatus();
}

EtcdServer::~EtcdServer() { Stop(); }

void EtcdServer::TransferLeadershipOnStop() {
  // etcd hands leadership to the most caught-up voter before it stops, so
  // a rolling restart costs no election timeout.
  if (!raft_ || !is_leader() || membership_.VoterCount() < 2 || removed_.load()) return;
  raft::RaftStatus st = raft_->Status();
  uint64_t best = 0, best_match = 0;
  for (const auto& [id, pr] : st.progress) {
    if (id == member_id_ || pr.is_learner) continue;
    if (transport_->ActiveSinceMs(id) == 0) continue;
    if (best == 0 || pr.match > best_match) {
      best = id;
      best_match = pr.match;
    }
  }
  if (best == 0) return;
  Log()->info("transferring leadership to {} before stopping", IdToHex(best));
  raft_->TransferLeader(best);
  auto give_up = std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.election_ms);
  while (std::chrono::steady_clock::now() < give_up && leader() != best) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (leader() != best) Log()->warn("leadership transfer to {} timed out", IdToHex(best));
}

void EtcdServer::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_ && !apply_thread_.joinable() && !raft_) return;
  }
  TransferLeadershipOnStop();
  {
    absl::MutexLock l(&mu_);
    stopping_ = true;
  }
  // The apply loop finishes what is already committed (it may still need the
  // node loop for a conf change), then the node loop stops and closes the WAL.
  {
    absl::MutexLock l(&read_mu_);
    read_stopping_ = true;
  }
  if (lease_thread_.joinable()) lease_thread_.join();
  if (housekeeping_thread_.joinable()) housekeeping_thread_.join();
  if (read_thread_.joinable()) read_thread_.join();
  if (apply_thread_.joinable()) apply_thread_.join();
  // Nothing is sent once the node loop stops; stop the senders first so a
  // dead peer cannot hold the shutdown.
  if (transport_) transport_->Stop();
  if (raft_) {
    raft_->Stop();
    raft_.reset();
  }
  // Reads still waiting fail like the writes.
  std::vector<ReadWaiter> reads;
  {
    absl::MutexLock l(&read_mu_);
    for (auto& w : read_pending_) reads.push_back(std::move(w));
    for (auto& w : read_inflight_) reads.push_back(std::move(w));
    for (auto& [idx, ws] : read_confirmed_) {
      for (auto& w : ws) reads.push_back(std::move(w));
    }
    read_pending_.clear();
    read_inflight_.clear();
    read_confirmed_.clear();
  }
  for (auto& w : reads) w.done(EtcdError(kErrStopped));
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
  // Test only: a pause between finding expired leases and proposing their
  // revokes, in which a leader that was stalled learns it was deposed.
  const int64_t revoke_delay_ms =
      PositiveFailpointFromEnv("ETCDPP_LEASE_FAILPOINTS", "revoke_delay_ms", "etcdserver");
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(500))) return;
    }
    // What the lessor finds is decided by this member's clock as the
    // leader of `term`: proposed in that term only. A leader deposed while
    // it was stalled (paused, swapping) must not have a later leader, whose
    // keepalives it never saw, commit its revokes (etcd #15247); read
    // before the lessor, so a later promotion cannot vouch for it.
    const uint64_t term = lessor_term_.load();
    if (term == 0) continue;
    // --experimental-enable-lease-checkpoint: the remaining TTLs of long
    // leases go through Raft now and then, so a new leader does not give
    // them their whole TTL again.
    if (std::vector<lease::Checkpoint> cps = lessor_->FindDueCheckpoints(kRevokesPerRound);
        !cps.empty()) {
      ProposeLeaseCheckpoints(cps, term);
    }
    std::vector<lease::LeaseId> expired = lessor_->FindExpired(kRevokesPerRound);
    if (!expired.empty() && revoke_delay_ms > 0) absl::SleepFor(absl::Milliseconds(revoke_delay_ms));
    for (lease::LeaseId id : expired) {
      internalpb::InternalRequest req;
      req.mutable_lease_revoke()->set_id(id);
      Propose(
          std::move(req),
          [id](ApplyResult r) {
            // Already revoked by its holder, or lost with the leadership:
            // the lessor offers it again later if it is still there.
            if (!r.status.ok()) {
              Log()->debug("revoking expired lease {:x}: {}", id, std::string(r.status.message()));
            }
          },
          term);
    }
  }
}

void EtcdServer::ProposeLeaseCheckpoints(const std::vector<lease::Checkpoint>& cps,
                                         uint64_t leader_term) {
  internalpb::InternalRequest req;
  for (const auto& cp : cps) {
    auto* c = req.mutable_lease_checkpoint()->add_checkpoints();
    c->set_id(cp.id);
    c->set_remaining_ttl(cp.remaining_ttl);
  }
  Propose(std::move(req), [](ApplyResult) {}, leader_term);
}

void EtcdServer::RenewLease(lease::LeaseId id, RenewDone done) {
  if (!lessor_->IsPrimary()) return done(absl::FailedPreconditionError(lease::kErrNotPrimary));
  ReadBarrier([this, id, done = std::move(done)](absl::Status st) {
    if (!st.ok()) return done(st);
    bool clear_checkpoint = false;
    // Not the primary any more (deposed meanwhile): the caller forwards.
    auto ttl = lessor_->Renew(id, &clear_checkpoint);
    // A renewed lease runs its whole TTL again: its checkpointed remaining
    // TTL is cleared everywhere (etcd: at most 2 entries per lease per
    // checkpoint interval).
    if (ttl.ok() && clear_checkpoint) ProposeLeaseCheckpoints({lease::Checkpoint{id, 0}});
    done(std::move(ttl));
  });
}

void EtcdServer::RegisterWaiter(uint64_t id, Done done) {
  const absl::Time deadline = absl::Now() + RequestTimeout();
  absl::MutexLock l(&wait_mu_);
  waiters_.emplace(id, std::move(done));
  // Every request gets the same timeout, so deadlines arrive in order.
  deadlines_.emplace_back(deadline, id);
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
    deadlines_.clear();
  }
  for (auto& [id, done] : waiters) {
    ApplyResult r;
    r.status = status;
    done(std::move(r));
  }
}

void EtcdServer::Propose(internalpb::InternalRequest req, Done done, uint64_t leader_term) {
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
  RegisterWaiter(id, std::move(done));
  ProposeData(id, std::move(data), /*conf_change=*/false, leader_term);
}

void EtcdServer::ProposeData(uint64_t id, std::string data, bool conf_change,
                             uint64_t leader_term) {
  auto dropped = [this, id, conf_change, leader_term](absl::Status, std::string back) {
    if (!back.empty()) {
      // No leader yet (an election): propose again once there is one, until
      // the request times out ("request timed out"), as etcd's requests wait.
      absl::MutexLock l(&wait_mu_);
      if (waiters_.contains(id)) retry_.push_back({id, std::move(back), conf_change});
      return;
    }
    // A leader transfer is under way (etcd fails the request at once), or
    // a term-bound proposal outlived its term (it never comes back: never
    // proposed again).
    if (Done d = TakeWaiter(id)) {
      ApplyResult r;
      r.status = EtcdError(leader_term != 0 ? kErrNotLeader : kErrNoLeader);
      d(std::move(r));
    }
  };
  if (!conf_change) return raft_->Propose(std::move(data), std::move(dropped), leader_term);
  raftpb::ConfChange cc;
  cc.ParseFromString(data);  // serialized here, from a ConfChange
  raft_->ProposeConfChange(std::move(cc), std::move(dropped));
}

absl::Status EtcdServer::ValidateConfChange(const raftpb::ConfChange& cc,
                                            const raftpb::ConfState& cs) const {
  // Only log-derived state decides (Raft's membership as of this entry), so
  // that every member, including one that joined later and replays the
  // log, reaches the same verdict. Requests were checked against the
  // membership (URLs in use, learner limits, ...) before they were proposed.
  auto in = [&](const auto& ids) {
    return std::find(ids.begin(), ids.end(), cc.node_id()) != ids.end();
  };
  const bool voter = in(cs.voters());
  const bool learner = in(cs.learners());
  switch (cc.type()) {
    case raftpb::ConfChangeAddNode:
      return absl::OkStatus();  // a new voter, a promotion, or (a voter) no change
    case raftpb::ConfChangeAddLearnerNode:
      if (voter) return EtcdError(kErrMemberExist);  // never demote
      return absl::OkStatus();
    case raftpb::ConfChangeRemoveNode:
    case raftpb::ConfChangeUpdateNode:
      if (!voter && !learner) return EtcdError(kErrMemberNotFound);
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError("unknown conf change type");
  }
}

void EtcdServer::PersistMembership(mvcc::Store::WriteTxn* txn) {
  txn->SetMeta(kMetaMembers, membership_.ToProto().SerializeAsString());
}

void EtcdServer::ApplyConfChangeEntry(const raftpb::Entry& e, bool already_applied) {
  raftpb::ConfChange cc;
  ETCDPP_CHECK(cc.ParseFromString(e.data()));  // committed data that does not parse is a bug
  absl::Status st = ValidateConfChange(cc, raft_conf_);
  if (st.ok()) {
    raft_conf_ = raft_->ApplyConfChange(cc);
  } else {
    // Rejected: Raft still needs to hear that the pending change is done.
    raftpb::ConfChange noop;
    noop.set_node_id(0);
    raft_conf_ = raft_->ApplyConfChange(noop);
  }
  // An entry the store (a snapshot from the leader) already holds: Raft
  // needed it, the membership and the store do not.
  if (already_applied) return;
  conf_state_ = raft_conf_;
  if (st.ok()) membership_.ApplyConfChange(cc);
  auto txn = store_->BeginWrite();
  txn->SetMeta(kMetaConfState, conf_state_.SerializeAsString());
  PersistMembership(txn.get());
  ETCDPP_CHECK_OK(txn->Commit(e.index()).status());
  if (st.ok()) {
    SyncPeers();
    if (cc.type() == raftpb::ConfChangeRemoveNode) {
      Log()->info("removed member {} from cluster {}", IdToHex(cc.node_id()), IdToHex(cluster_id_));
      if (cc.node_id() == member_id_) OnRemovedFromCluster();
    } else if (cc.type() == raftpb::ConfChangeAddNode ||
               cc.type() == raftpb::ConfChangeAddLearnerNode) {
      Log()->info("added member {} to cluster {}{}", IdToHex(cc.node_id()), IdToHex(cluster_id_),
                  cc.type() == raftpb::ConfChangeAddLearnerNode ? " as a learner" : "");
    }
  }
  if (Done done = TakeWaiter(cc.id())) {
    ApplyResult r;
    r.status = st;
    done(std::move(r));
  }
}

void EtcdServer::SyncPeers() {
  if (!transport_) return;
  std::set<uint64_t> want;
  for (const auto& m : membership_.Members()) {
    if (m.id() == member_id_) continue;
    want.insert(m.id());
    std::vector<std::string> urls(m.peer_urls().begin(), m.peer_urls().end());
    // AddPeer of a known peer updates its URLs.
    transport_->AddPeer(m.id(), urls);
  }
  absl::MutexLock l(&peers_mu_);
  for (uint64_t id : known_peers_) {
    if (!want.count(id)) transport_->RemovePeer(id);
  }
  known_peers_ = want;
}

void EtcdServer::ApplyLoop() {
  apply_entry_delay_ms_ =
      PositiveFailpointFromEnv("ETCDPP_APPLY_FAILPOINTS", "entry_delay_ms", "etcdserver");
  for (;;) {
    std::deque<ApplyItem> batch;
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
    // Publishes what was applied so far: watchers, waiters, readers.
    auto finish_batch = [&] {
      durable_rev_ = store_->CurrentRevision();
      visible_index_ = applied_index_.load();
      // Watchers see a batch once it is applied; OnApplied only queues.
      watch_hub_->OnApplied(std::move(watch_events), durable_rev_.load());
      watch_events.clear();
      db_size_bytes_.store(store_->SizeBytes(), std::memory_order_relaxed);
      for (auto& [done, result] : finished) done(std::move(result));
      finished.clear();
      for (auto& w : compactions) w->Arrive();
      compactions.clear();
      // Wake the reads waiting for this applied index.
      absl::MutexLock l(&read_mu_);
    };
    for (ApplyItem& item : batch) {
      if (apply_entry_delay_ms_ > 0) absl::SleepFor(absl::Milliseconds(apply_entry_delay_ms_));
      if (item.snapshot) {
        finish_batch();
        InstallSnapshot(*item.snapshot);
        continue;
      }
      raftpb::Entry& e = item.entry;
      const uint64_t index = e.index();
      if (e.type() == raftpb::EntryConfChange) {
        const bool already = index <= applied_index_.load();
        ApplyConfChangeEntry(e, already);
        if (!already) applied_index_ = index;
        continue;
      }
      if (index <= applied_index_.load()) continue;  // applied before a restart / in a snapshot
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
      if (req.has_member_attributes()) {
        membership_.ApplyAttributes(req.member_attributes());
        auto txn = store_->BeginWrite();
        PersistMembership(txn.get());
        ETCDPP_CHECK_OK(txn->Commit(index).status());
        applied_index_ = index;
        if (req.member_attributes().id() == member_id_) published_ = true;
        if (done) finished.emplace_back(std::move(done), ApplyResult());
        continue;
      }
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
    finish_batch();

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
  resp->set_islearner(IsLearner());
  if (resp->leader() == 0) resp->add_errors(kErrNoLeader);
  // etcd lists each alarm in its protobuf text form, e.g.
  // "memberID:10276657743932975437 alarm:NOSPACE " (trailing space included).
  for (const auto& m : Alarms()) {
    resp->add_errors(absl::StrCat("memberID:", m.memberid(), " alarm:",
                                  etcdserverpb::AlarmType_Name(m.alarm()), " "));
  }
}

std::vector<MemberInfo> EtcdServer::MemberList() const {
  std::vector<MemberInfo> out;
  for (const auto& m : membership_.Members()) {
    MemberInfo mi;
    mi.id = m.id();
    mi.name = m.name();
    mi.peer_urls.assign(m.peer_urls().begin(), m.peer_urls().end());
    mi.client_urls.assign(m.client_urls().begin(), m.client_urls().end());
    mi.is_learner = m.is_learner();
    out.push_back(std::move(mi));
  }
  return out;
}

bool EtcdServer::IsLearner() const {
  auto me = membership_.Get(member_id_);
  return me && me->is_learner();
}

std::vector<std::string> EtcdServer::LeaderClientUrls() const {
  auto m = membership_.Get(leader());
  if (!m) return {};
  return {m->client_urls().begin(), m->client_urls().end()};
}

std::vector<std::string> EtcdServer::LeaderPeerUrls() const {
  auto m = membership_.Get(leader());
  if (!m) return {};
  return {m->peer_urls().begin(), m->peer_urls().end()};
}

absl::Duration EtcdServer::RequestTimeout() const {
  return absl::Seconds(5) + absl::Milliseconds(2 * config_.election_ms);
}

// ---- store, snapshots ----

namespace {

std::string SnapRel(uint64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "snap/%016llx.db", static_cast<unsigned long long>(index));
  return buf;
}

absl::StatusOr<std::unique_ptr<mvcc::Store>> OpenStoreAt(const std::string& path) {
  mvcc::Options opts;
  opts.path = path;
  auto store = mvcc::Store::Open(opts);
  if (!store.ok()) {
    return absl::Status(store.status().code(), absl::StrCat("opening the store at ", path, ": ",
                                                            store.status().message()));
  }
  return store;
}

}  // namespace

absl::Status EtcdServer::OpenStore() {
  std::string rel = "db";
  {
    std::ifstream in(member_dir_ + "/" + kDbPathFile);
    std::string line;
    if (in && std::getline(in, line) && !line.empty()) rel = line;
  }
  ETCDPP_ASSIGN_OR_RETURN(std::unique_ptr<mvcc::Store> store, OpenStoreAt(member_dir_ + "/" + rel));
  // A snapshot from the leader that the WAL accepted but that was not
  // installed before a crash: install it now.
  const std::string wal_dir = member_dir_ + "/wal";
  if (wal::Wal::Exists(wal_dir)) {
    ETCDPP_ASSIGN_OR_RETURN(std::vector<wal::SnapshotMarker> markers,
                            wal::Wal::ReadSnapshotMarkers(wal_dir));
    uint64_t newest = 0;
    for (const auto& m : markers) newest = std::max(newest, m.index);
    const std::string snap_rel = SnapRel(newest);
    std::error_code ec;
    if (newest > store->ConsistentIndex() && fs::exists(member_dir_ + "/" + snap_rel, ec)) {
      Log()->info("installing the snapshot at index {} received before the last stop", newest);
      store.reset();
      ETCDPP_ASSIGN_OR_RETURN(store, OpenStoreAt(member_dir_ + "/" + snap_rel));
      ETCDPP_RETURN_IF_ERROR(WriteFileAtomically(member_dir_ + "/" + kDbPathFile, snap_rel + "\n"));
      if (rel != snap_rel) fs::remove_all(member_dir_ + "/" + rel, ec);
      rel = snap_rel;
    }
  }
  // Snapshots received but superseded, and copies being sent when we stopped.
  std::error_code ec;
  if (fs::exists(member_dir_ + "/snap", ec)) {
    for (const auto& ent : fs::directory_iterator(member_dir_ + "/snap", ec)) {
      std::string r = "snap/" + ent.path().filename().string();
      if (r != rel) fs::remove_all(ent.path(), ec);
    }
  }
  store_dir_ = member_dir_ + "/" + rel;
  store_ = std::make_unique<mvcc::SwappableStore>(std::move(store));
  return absl::OkStatus();
}

absl::StatusOr<std::string> EtcdServer::PrepareSnapshot(const raftpb::Message& m) {
  const std::string dir =
      absl::StrCat(member_dir_, "/snap/send-", IdToHex(m.to()), "-", snapshot_seq_.fetch_add(1));
  std::error_code ec;
  fs::remove_all(dir, ec);
  ETCDPP_RETURN_IF_ERROR(store_->Checkpoint(dir));
  Log()->info("sending a snapshot of the store (applied index {}) to member {}",
              applied_index_.load(), IdToHex(m.to()));
  return dir;
}

absl::Status EtcdServer::OnSnapshot(raftpb::Message message, std::string dir) {
  const uint64_t index = message.snapshot().metadata().index();
  std::error_code ec;
  if (index <= applied_index_.load()) {
    fs::remove_all(dir, ec);  // we have it already; Raft answers the leader
  } else {
    const std::string target = member_dir_ + "/" + SnapRel(index);
    fs::remove_all(target, ec);
    if (::rename(dir.c_str(), target.c_str()) != 0) {
      std::string err = std::strerror(errno);
      fs::remove_all(dir, ec);
      return absl::InternalError(absl::StrCat("rename ", dir, " to ", target, ": ", err));
    }
    ETCDPP_RETURN_IF_ERROR(FsyncPath(member_dir_ + "/snap", true));
    Log()->info("received a snapshot at index {} from member {}", index, IdToHex(message.from()));
  }
  if (raft_) raft_->Step(std::move(message));
  return absl::OkStatus();
}

void EtcdServer::InstallSnapshot(const raftpb::Snapshot& snap) {
  const uint64_t index = snap.metadata().index();
  const std::string rel = SnapRel(index);
  const std::string path = member_dir_ + "/" + rel;
  std::error_code ec;
  if (index <= applied_index_.load()) {
    if (path != store_dir_) fs::remove_all(path, ec);
    return;
  }
  Log()->info("applying snapshot at index {}...", index);
  // No snapshot data for an index Raft accepted: the disk lost what we
  // fsynced. Never guess: stop.
  ETCDPP_CHECK(fs::exists(path, ec));
  auto next = OpenStoreAt(path);
  ETCDPP_CHECK_OK(next.status());
  const int64_t old_rev = store_->CurrentRevision();
  std::unique_ptr<mvcc::Store> old = store_->Swap(std::move(*next));
  old.reset();  // closes it
  ETCDPP_CHECK_OK(WriteFileAtomically(member_dir_ + "/" + kDbPathFile, rel + "\n"));
  if (store_dir_ != path) fs::remove_all(store_dir_, ec);
  store_dir_ = path;

  applied_index_ = store_->ConsistentIndex();
  last_log_compaction_ = applied_index_.load();
  auto cs = store_->GetMeta(kMetaConfState);
  if (cs.ok() && cs->has_value()) ETCDPP_CHECK(conf_state_.ParseFromString(**cs));
  // Raft restarts from the snapshot's membership and replays the conf
  // changes between it and the store's applied index.
  raft_conf_ = snap.metadata().conf_state();
  auto members = store_->GetMeta(kMetaMembers);
  internalpb::Membership mp;
  if (members.ok() && members->has_value() && mp.ParseFromString(**members)) {
    membership_.Reset(mp);
    SyncPeers();
  }
  lessor_->Clear();
  auto leases = store_->LoadLeases();
  ETCDPP_CHECK_OK(leases.status());
  std::vector<lease::LeaseRecord> records;
  for (const auto& l : *leases) records.push_back({l.id, l.ttl, l.remaining_ttl});
  lessor_->Recover(records);
  for (const auto& l : *leases) {
    for (const auto& k : l.keys) ETCDPP_CHECK_OK(lessor_->Attach(l.id, k));
  }
  // Watchers: the revisions the snapshot skipped, from its history.
  const int64_t new_rev = store_->CurrentRevision();
  auto history = mvcc::MakeStoreHistory(store_.get());
  int64_t from = old_rev + 1;
  while (history && from <= new_rev) {
    auto b = history->ReadEvents(from, new_rev, 1000, false);
    if (!b.ok()) {
      Log()->warn("watchers miss revisions {}..{} (compacted in the snapshot): {}", from, new_rev,
                  b.status().ToString());
      break;
    }
    int64_t upto = std::min(new_rev, b->next_rev - 1);
    watch_hub_->OnApplied(std::move(b->events), upto);
    if (b->next_rev <= from) break;
    from = b->next_rev;
  }
  durable_rev_ = new_rev;
  visible_index_ = applied_index_.load();
  watch_hub_->OnApplied({}, new_rev);
  Log()->info("finished applying incoming snapshot at index {} (store applied index {}, revision {})",
              index, applied_index_.load(), new_rev);
}

// ---- peers ----

void EtcdServer::OnMessages(std::vector<raftpb::Message> messages) {
  if (!raft_) return;
  for (auto& m : messages) raft_->Step(std::move(m));
}

peerpb::MembersResponse EtcdServer::Members() {
  peerpb::MembersResponse r;
  r.set_cluster_id(cluster_id_);
  *r.mutable_membership() = membership_.ToProto();
  return r;
}

void EtcdServer::ReportUnreachable(uint64_t id) {
  if (raft_) raft_->ReportUnreachable(id);
}

void EtcdServer::ReportSnapshot(uint64_t id, bool ok) {
  if (raft_) raft_->ReportSnapshot(id, ok);
}

void EtcdServer::OnRemovedFromCluster() {
  if (removed_.exchange(true)) return;
  Log()->error("the member has been permanently removed from the cluster");
  Log()->error("the data-dir used by this member must be removed.");
  if (on_removed_) on_removed_();
}

// ---- linearizable reads ----

bool EtcdServer::NeedsReadBarrier() const {
  return !(is_leader() && membership_.VoterCount() == 1);
}

void EtcdServer::ReadBarrier(std::function<void(absl::Status)> done) {
  if (!NeedsReadBarrier()) return done(absl::OkStatus());
  {
    absl::MutexLock l(&read_mu_);
    if (!read_stopping_) {
      read_pending_.push_back(ReadWaiter{std::move(done), absl::Now() + RequestTimeout()});
      if (read_ctx_.empty()) StartReadRound();
      return;
    }
  }
  done(EtcdError(kErrStopped));
}

void EtcdServer::StartReadRound() {
  if (read_pending_.empty() || !raft_) return;
  read_inflight_ = std::move(read_pending_);
  read_pending_.clear();
  uint64_t id = id_gen_->Next();
  read_ctx_.assign(reinterpret_cast<const char*>(&id), sizeof(id));
  read_started_ = absl::Now();
  raft_->ReadIndex(read_ctx_);
}

void EtcdServer::OnReadStates(std::vector<raft::ReadState> states) {
  absl::MutexLock l(&read_mu_);
  for (auto& rs : states) {
    if (read_ctx_.empty() || rs.request_ctx != read_ctx_) continue;  // a retried round
    read_confirmed_.emplace_back(rs.index, std::move(read_inflight_));
    read_inflight_.clear();
    read_ctx_.clear();
    StartReadRound();
  }
}

void EtcdServer::ReadLoop() {
  for (;;) {
    std::vector<ReadWaiter> ready;
    {
      absl::MutexLock l(&read_mu_);
      auto cond = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(read_mu_) {
        return read_stopping_ || (!read_confirmed_.empty() &&
                                  read_confirmed_.front().first <= visible_index_.load());
      };
      read_mu_.Await(absl::Condition(&cond));
      if (read_stopping_) return;
      while (!read_confirmed_.empty() && read_confirmed_.front().first <= visible_index_.load()) {
        for (auto& w : read_confirmed_.front().second) ready.push_back(std::move(w));
        read_confirmed_.pop_front();
      }
    }
    for (auto& w : ready) w.done(absl::OkStatus());
  }
}

void EtcdServer::HousekeepingLoop() {
  absl::Time last_publish = absl::InfinitePast();
  const absl::Duration read_retry = absl::Milliseconds(std::max<int64_t>(config_.election_ms, 500));
  for (;;) {
    {
      absl::MutexLock l(&mu_);
      auto stop = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_; };
      if (mu_.AwaitWithTimeout(absl::Condition(&stop), absl::Milliseconds(50))) return;
    }
    const absl::Time now = absl::Now();
    // Requests whose entry never came back (lost with a leader, or no quorum).
    std::vector<Done> expired;
    std::vector<MoveWaiter> moved;
    {
      absl::MutexLock l(&wait_mu_);
      // Only the expired requests are looked at (oldest first); those
      // answered meanwhile are no longer in waiters_.
      while (!deadlines_.empty() && deadlines_.front().first <= now) {
        auto it = waiters_.find(deadlines_.front().second);
        deadlines_.pop_front();
        if (it == waiters_.end()) continue;
        expired.push_back(std::move(it->second));
        waiters_.erase(it);
      }
      const uint64_t lead = leader();
      for (auto it = move_waiters_.begin(); it != move_waiters_.end();) {
        if (lead == it->target || it->deadline <= now) {
          moved.push_back(std::move(*it));
          it = move_waiters_.erase(it);
        } else {
          ++it;
        }
      }
    }
    for (auto& d : expired) {
      ApplyResult r;
      r.status = EtcdError(kErrTimeout);
      d(std::move(r));
    }
    // Proposals that found no leader: again, once one is known.
    if (leader() != 0) {
      std::vector<Retry> again;
      {
        absl::MutexLock l(&wait_mu_);
        again.swap(retry_);
      }
      for (auto& r : again) {
        bool waiting;
        {
          absl::MutexLock l(&wait_mu_);
          waiting = waiters_.contains(r.id);
        }
        if (waiting) ProposeData(r.id, std::move(r.data), r.conf_change);
      }
    }
    for (auto& m : moved) {
      m.done(leader() == m.target ? absl::OkStatus() : EtcdError(kErrTimeout));
    }
    // Reads: retry a round nobody answered (the leader changed or was not
    // known); fail the reads that waited longer than a request may.
    std::vector<ReadWaiter> timed_out;
    {
      absl::MutexLock l(&read_mu_);
      auto take_expired = [&](std::vector<ReadWaiter>& v) {
        for (auto it = v.begin(); it != v.end();) {
          if (it->deadline <= now) {
            timed_out.push_back(std::move(*it));
            it = v.erase(it);
          } else {
            ++it;
          }
        }
      };
      take_expired(read_pending_);
      take_expired(read_inflight_);
      if (!read_ctx_.empty() && now - read_started_ > read_retry) {
        for (auto& w : read_pending_) read_inflight_.push_back(std::move(w));
        read_pending_ = std::move(read_inflight_);
        read_inflight_.clear();
        read_ctx_.clear();
        StartReadRound();
      } else if (read_ctx_.empty() && !read_pending_.empty()) {
        StartReadRound();
      }
    }
    for (auto& w : timed_out) w.done(EtcdError(kErrTimeout));
    // Publish our name and client URLs through Raft (etcd's publish).
    if (!published_.load() && leader() != 0 && now - last_publish > RequestTimeout()) {
      last_publish = now;
      internalpb::InternalRequest req;
      auto* a = req.mutable_member_attributes();
      a->set_id(member_id_);
      a->set_name(config_.name);
      for (const auto& u : config_.advertise_client_urls) a->add_client_urls(u.original);
      Propose(std::move(req), [](ApplyResult) {});
    }
  }
}

// ---- membership changes ----

void EtcdServer::ProposeConfChange(raftpb::ConfChange cc, MemberDone done) {
  const uint64_t id = id_gen_->Next();
  const uint64_t node = cc.node_id();
  cc.set_id(id);
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return done(EtcdError(kErrStopped), {});
  }
  RegisterWaiter(id, [this, node, done](ApplyResult r) {
    internalpb::Member m;
    if (auto got = membership_.Get(node)) m = *got;
    m.set_id(node);
    done(r.status, m);
  });
  ProposeData(id, cc.SerializeAsString(), /*conf_change=*/true);
}

bool EtcdServer::ConnectedFor(uint64_t id, int64_t ms) const {
  if (id == member_id_) return true;
  const int64_t t = transport_->ActiveSinceMs(id);
  const int64_t now = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  return t != 0 && t <= now - ms;
}

void EtcdServer::ProposeMemberChange(raftpb::ConfChangeType type, const internalpb::Member& m,
                                     MemberDone done) {
  raftpb::ConfChange cc;
  cc.set_type(type);
  cc.set_node_id(m.id());
  cc.set_context(m.SerializeAsString());
  ProposeConfChange(std::move(cc), std::move(done));
}

void EtcdServer::AddMember(std::vector<std::string> peer_urls, bool is_learner, MemberDone done) {
  if (peer_urls.empty()) return done(EtcdError(kErrMemberBadUrls), {});
  for (const auto& u : peer_urls) {
    if (!ParseUrl(u).ok()) return done(EtcdError(kErrMemberBadUrls), {});
  }
  if (membership_.PeerUrlInUse(peer_urls)) return done(EtcdError(kErrPeerUrlExist), {});
  auto members = membership_.Members();
  if (is_learner) {
    for (const auto& m : members) {
      if (m.is_learner()) return done(EtcdError(kErrTooManyLearners), {});
    }
  }
  if (config_.strict_reconfig_check) {
    if (!is_learner) {
      int nvoters = 0, nstarted = 0;
      for (const auto& m : members) {
        if (m.is_learner()) continue;
        ++nvoters;
        if (!m.name().empty()) ++nstarted;
      }
      const int nmembers = nvoters + 1;
      const bool one_to_two = nstarted == 1 && nmembers == 2;
      if (!one_to_two && nstarted < nmembers / 2 + 1) {
        return done(EtcdError(kErrMemberNotEnoughStarted), {});
      }
    }
    // etcd's isConnectedFullyInCluster: every voter connected for at
    // least its health interval.
    for (const auto& m : members) {
      if (!m.is_learner() && !ConnectedFor(m.id(), kHealthIntervalMs)) {
        return done(EtcdError(kErrUnhealthy), {});
      }
    }
  }
  // etcd's ID for an added member: its peer URLs and the time.
  int64_t now_s = absl::ToUnixSeconds(absl::Now());
  uint64_t id = 0;
  do {
    id = ComputeMemberId(peer_urls, std::to_string(now_s++));
  } while (id == 0 || membership_.IsMember(id) || membership_.IsRemoved(id));
  internalpb::Member m;
  m.set_id(id);
  for (const auto& u : peer_urls) m.add_peer_urls(u);
  m.set_is_learner(is_learner);
  ProposeMemberChange(is_learner ? raftpb::ConfChangeAddLearnerNode : raftpb::ConfChangeAddNode, m,
                      std::move(done));
}

void EtcdServer::RemoveMember(uint64_t id, MemberDone done) {
  auto target = membership_.Get(id);
  if (!target) return done(EtcdError(kErrMemberNotFound), {});
  if (config_.strict_reconfig_check && !target->is_learner()) {
    int nmembers = 0, nstarted = 0;
    std::vector<uint64_t> voters;
    for (const auto& m : membership_.Members()) {
      if (m.is_learner()) continue;
      voters.push_back(m.id());
      if (m.id() == id) continue;
      ++nmembers;
      if (!m.name().empty()) ++nstarted;
    }
    if (nstarted < nmembers / 2 + 1) return done(EtcdError(kErrMemberNotEnoughStarted), {});
    // A member that is down is safe to remove: it is not in the active quorum.
    const bool down = id != member_id_ && transport_->ActiveSinceMs(id) == 0;
    if (!down) {
      // Keep a quorum of members that have been connected for a while.
      int active = 0;
      for (uint64_t v : voters) {
        if (ConnectedFor(v, kHealthIntervalMs)) ++active;
      }
      const int n = static_cast<int>(voters.size());
      if (active - 1 < 1 + (n - 1) / 2) return done(EtcdError(kErrUnhealthy), {});
    }
  }
  raftpb::ConfChange cc;
  cc.set_type(raftpb::ConfChangeRemoveNode);
  cc.set_node_id(id);
  internalpb::Member gone = *target;
  ProposeConfChange(std::move(cc), [done, gone](absl::Status st, internalpb::Member) {
    done(st, gone);
  });
}

void EtcdServer::UpdateMember(uint64_t id, std::vector<std::string> peer_urls, MemberDone done) {
  if (peer_urls.empty()) return done(EtcdError(kErrMemberBadUrls), {});
  for (const auto& u : peer_urls) {
    if (!ParseUrl(u).ok()) return done(EtcdError(kErrMemberBadUrls), {});
  }
  auto target = membership_.Get(id);
  if (!target) return done(EtcdError(kErrMemberNotFound), {});
  if (membership_.PeerUrlInUse(peer_urls, id)) return done(EtcdError(kErrPeerUrlExist), {});
  internalpb::Member m = *target;
  m.clear_peer_urls();
  for (const auto& u : peer_urls) m.add_peer_urls(u);
  ProposeMemberChange(raftpb::ConfChangeUpdateNode, m, std::move(done));
}

void EtcdServer::PromoteMember(uint64_t id, MemberDone done) {
  auto target = membership_.Get(id);
  if (!target) return done(EtcdError(kErrMemberNotFound), {});
  if (!target->is_learner()) return done(EtcdError(kErrMemberNotLearner), {});
  if (!is_leader()) return done(EtcdError(kErrNotLeader), {});
  if (config_.strict_reconfig_check) {
    int nmembers = 1, nstarted = 0;
    for (const auto& m : membership_.Members()) {
      if (m.is_learner()) continue;
      ++nmembers;
      if (!m.name().empty()) ++nstarted;
    }
    if (nstarted < nmembers / 2 + 1) return done(EtcdError(kErrMemberNotEnoughStarted), {});
  }
  // etcd: the learner's log must be within 10% of the leader's.
  raft::RaftStatus st = raft_->Status();
  auto lp = st.progress.find(member_id_);
  auto pp = st.progress.find(id);
  if (lp == st.progress.end() || pp == st.progress.end() ||
      static_cast<double>(pp->second.match) < static_cast<double>(lp->second.match) * 0.9) {
    return done(EtcdError(kErrLearnerNotReady), {});
  }
  internalpb::Member m = *target;
  m.set_is_learner(false);
  ProposeMemberChange(raftpb::ConfChangeAddNode, m, std::move(done));
}

void EtcdServer::MoveLeader(uint64_t target, std::function<void(absl::Status)> done) {
  if (!is_leader()) return done(EtcdError(kErrNotLeader));
  auto m = membership_.Get(target);
  if (!m || m->is_learner()) return done(EtcdError(kErrBadLeaderTransferee));
  if (target == member_id_) return done(absl::OkStatus());
  {
    absl::MutexLock l(&wait_mu_);
    move_waiters_.push_back(MoveWaiter{target, absl::Now() + RequestTimeout(), std::move(done)});
  }
  raft_->TransferLeader(target);
}

}  // namespace etcdpp::server
