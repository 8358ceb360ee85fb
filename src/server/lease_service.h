// etcd's Lease service: grant, revoke, time-to-live, list, and the
// keepalive stream.
#pragma once

#include <memory>

#include <grpcpp/impl/service_type.h>

#include "server/etcd_server.h"

namespace etcdpp::server {

// `server` is not owned and must outlive the service.
std::unique_ptr<grpc::Service> MakeLeaseService(EtcdServer* server);
// The leader's side of lease requests followers forward (peer port).
std::unique_ptr<grpc::Service> MakePeerLeaseService(EtcdServer* server);

}  // namespace etcdpp::server
