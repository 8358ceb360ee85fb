#include "server/etcd_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
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
  // Like a single etcd member, every start is a new election: term + 1
  // (the first start elects itself at term 2).
  uint64_t last_term = 1;
  if (identity.count("term")) (void)absl::SimpleAtoi(identity["term"], &last_term);
  term_ = last_term + 1;
  identity["term"] = absl::StrCat(term_);
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
  applier_ = std::make_unique<Applier>(store_.get(), [](int64_t) { return false; });
  applied_index_ = store_->ConsistentIndex();
  durable_rev_ = store_->CurrentRevision();
  db_size_bytes_ = store_->SizeBytes();
  Log()->info("recovered store: revision {}, compacted revision {}, applied index {}",
              store_->CurrentRevision(), store_->CompactedRevision(), applied_index_.load());
  return absl::OkStatus();
}

EtcdServer::~EtcdServer() { Stop(); }

void EtcdServer::Stop() {
  std::deque<Pending> dropped;
  {
    absl::MutexLock l(&mu_);
    if (stopping_ && !apply_thread_.joinable()) return;
    stopping_ = true;
  }
  if (apply_thread_.joinable()) apply_thread_.join();
  {
    absl::MutexLock l(&mu_);
    dropped.swap(queue_);
  }
  for (auto& p : dropped) {
    ApplyResult r;
    r.status = EtcdError(kErrStopped);
    p.done(std::move(r));
  }
}

void EtcdServer::Propose(internalpb::InternalRequest req, Done done) {
  req.set_id(++next_request_id_);
  if (static_cast<int64_t>(req.ByteSizeLong()) > config_.max_request_bytes) {
    ApplyResult r;
    r.status = EtcdError(kErrRequestTooLarge);
    done(std::move(r));
    return;
  }
  {
    absl::MutexLock l(&mu_);
    if (!stopping_) {
      queue_.push_back(Pending{std::move(req), std::move(done)});
      return;
    }
  }
  ApplyResult r;
  r.status = EtcdError(kErrStopped);
  done(std::move(r));
}

void EtcdServer::ApplyLoop() {
  for (;;) {
    std::deque<Pending> batch;
    {
      absl::MutexLock l(&mu_);
      mu_.Await(absl::Condition(
          +[](EtcdServer* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->stopping_ || !s->queue_.empty();
          },
          this));
      // Drain what was queued before the stop; later ones fail in Stop().
      if (queue_.empty()) return;
      batch.swap(queue_);
    }
    std::vector<std::pair<Done, ApplyResult>> finished;
    std::vector<std::shared_ptr<CompactionWaiter>> compactions;
    finished.reserve(batch.size());
    for (Pending& p : batch) {
      uint64_t index = applied_index_.load() + 1;
      std::shared_ptr<CompactionWaiter> waiter;
      std::function<void()> on_compacted;
      if (p.req.has_compaction() && p.req.compaction().physical()) {
        waiter = std::make_shared<CompactionWaiter>();
        on_compacted = [waiter] { waiter->Arrive(); };
      }
      ApplyResult r = p.req.has_alarm() ? ApplyAlarm(p.req.alarm())
                                         : applier_->Apply(p.req, index, on_compacted);
      applied_index_ = index;
      if (waiter && r.status.ok()) {
        waiter->result = std::move(r);
        waiter->done = std::move(p.done);
        compactions.push_back(std::move(waiter));
      } else {
        finished.emplace_back(std::move(p.done), std::move(r));
      }
    }
    // Group commit: one fsync makes the whole batch durable. A failed fsync
    // leaves us unable to tell what is on disk: stop rather than guess.
    ETCDPP_CHECK_OK(store_->Sync());
    durable_rev_ = store_->CurrentRevision();
    db_size_bytes_.store(store_->SizeBytes(), std::memory_order_relaxed);
    for (auto& [done, result] : finished) done(std::move(result));
    for (auto& w : compactions) w->Arrive();
  }
}

absl::Status EtcdServer::Range(const etcdserverpb::RangeRequest& r,
                               etcdserverpb::RangeResponse* resp) {
  return applier_->Range(r, durable_rev_.load(), resp);
}

void EtcdServer::FillHeader(etcdserverpb::ResponseHeader* h, bool with_revision) const {
  h->set_cluster_id(cluster_id_);
  h->set_member_id(member_id_);
  h->set_raft_term(term_);
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
  resp->set_leader(member_id_);
  resp->set_raftindex(applied_index_.load());
  resp->set_raftterm(term_);
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
