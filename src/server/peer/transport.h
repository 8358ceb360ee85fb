// PeerTransport: raft messages between members, over gRPC on the peer port.
//
// Sending: Send() never blocks the raft node loop. Each peer has its own
// sender thread and bounded queue; the thread keeps one long-lived client
// stream (Peer.Stream) open and writes everything queued since its last
// write as ONE MessageBatch. A slow or dead peer only fills its own queue:
// when full, messages to it are dropped (Raft retransmits) and the peer is
// reported unreachable. A broken stream is reported unreachable and redialed
// with a bounded backoff. A MsgSnap goes on its own call (Peer.Snapshot):
// the handler provides a checkpoint directory, whose files are streamed in
// chunks; the outcome is reported with ReportSnapshot.
//
// Receiving: service() is registered on the member's peer-port gRPC server.
// Every call is checked against the metadata (see proto/peer.proto): the
// cluster ID and recipient must be ours and the sender must not be a removed
// member. Received messages go to the handler as they arrive; a snapshot is
// written under options.snapshot_dir, fsynced, and handed over complete.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "peer.pb.h"
#include "raft.pb.h"
#include "server/raft_node.h"

namespace grpc {
class Service;
}

namespace etcdpp::server::peer {

// Metadata keys on every peer call.
inline constexpr char kClusterIdHeader[] = "etcdpp-cluster-id";
inline constexpr char kFromHeader[] = "etcdpp-from";
inline constexpr char kToHeader[] = "etcdpp-to";
// What a removed member is told (etcd's text); it stops itself on hearing it.
inline constexpr char kMemberRemovedText[] =
    "the member has been permanently removed from the cluster";

// The server side of the transport. Called from gRPC and sender threads:
// must be thread-safe and must not block for long.
class PeerHandler {
 public:
  virtual ~PeerHandler() = default;
  // Raft messages from peers, to step into the local node.
  virtual void OnMessages(std::vector<raftpb::Message> messages) = 0;
  // A complete snapshot: `message` is the MsgSnap, `dir` a directory under
  // options.snapshot_dir holding the received files (now the handler's).
  // An error is returned to the sender (it reports the snapshot failed).
  virtual absl::Status OnSnapshot(raftpb::Message message, std::string dir) = 0;
  // Whether `id` was removed from the cluster.
  virtual bool IsRemoved(uint64_t id) = 0;
  // Answer to Peer.Members.
  virtual peerpb::MembersResponse Members() = 0;
  // Sender side of a MsgSnap: a directory whose files make up the state the
  // message's snapshot describes. The transport deletes it when done.
  virtual absl::StatusOr<std::string> PrepareSnapshot(const raftpb::Message& message) = 0;
  // Outcomes to report to Raft (RawNode::ReportUnreachable/ReportSnapshot).
  virtual void ReportUnreachable(uint64_t id) = 0;
  virtual void ReportSnapshot(uint64_t id, bool ok) = 0;
  // A peer refused us because we were removed from the cluster.
  virtual void OnRemovedFromCluster() = 0;
};

struct PeerTransportOptions {
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
  std::string snapshot_dir;            // received snapshots go under here
  size_t max_queued_messages = 4096;   // per peer
  size_t max_batch_bytes = 8 << 20;    // one MessageBatch at most (roughly)
  size_t snapshot_chunk_bytes = 1 << 20;
  int max_message_bytes = 256 << 20;   // gRPC send/receive limit on peer calls
  int dial_timeout_ms = 1000;
};

class PeerTransport final : public RaftTransport {
 public:
  PeerTransport(PeerTransportOptions options, PeerHandler* handler);
  ~PeerTransport() override;  // Stop()

  // Peers by member ID; urls like "http://127.0.0.1:2380" or
  // "http://[::1]:2380" (the first reachable one is used). Thread-safe.
  void AddPeer(uint64_t id, const std::vector<std::string>& urls);
  void UpdatePeer(uint64_t id, const std::vector<std::string>& urls);
  void RemovePeer(uint64_t id);

  // RaftTransport: routes by m.to(); never blocks. Messages to unknown
  // peers are dropped (and reported unreachable).
  void Send(std::vector<raftpb::Message> messages) override;

  // Since when the stream to `id` has been up (steady clock, ms since
  // epoch); 0 while it is down. etcd's strict reconfiguration check counts
  // a member as started once it is connected.
  int64_t ActiveSinceMs(uint64_t id) const;

  // The receiving side, to register on the peer-port gRPC server. Owned.
  // That server should allow messages of options.max_message_bytes
  // (ServerBuilder::SetMaxReceiveMessageSize): gRPC's default is 4 MiB,
  // less than one full batch (max_batch_bytes).
  grpc::Service* service();

  // Stops the sender threads; later Sends are dropped. Idempotent. Also
  // cancels the receiving calls in progress and refuses new ones, so call it
  // before the peer-port server's Shutdown() (whose deadline-less form waits
  // for calls, and a peer's stream never ends by itself).
  // REQUIRES: not called from a PeerHandler callback.
  void Stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Asks the member at one of `peer_urls` for the cluster (Peer.Members),
// as a member joining with --initial-cluster-state existing does.
absl::StatusOr<peerpb::MembersResponse> FetchMembers(const std::vector<std::string>& peer_urls,
                                                     int timeout_ms);

}  // namespace etcdpp::server::peer
