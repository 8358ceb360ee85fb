// etcd's Watch service (one bidirectional stream per Watch call) on the
// member's WatchHub. The reactor only moves messages: requests go to the hub,
// responses come back through a bounded outbox with one write in flight.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>

#include "server/etcd_server.h"

namespace etcdpp::server {

// Bytes of responses one stream may hold before its watchers are moved aside
// to catch up later (the hub stops handing it events).
inline constexpr int64_t kWatchStreamBufferBytes = 4 << 20;

// `server` is not owned and must outlive the service.
std::unique_ptr<grpc::Service> MakeWatchService(EtcdServer* server);

}  // namespace etcdpp::server
