// etcd's Lease service: grant, revoke, time-to-live, list, and the
// keepalive stream.
#pragma once

#include <memory>

#include <grpcpp/impl/service_type.h>

#include "server/etcd_server.h"

namespace etcdpp::server {

// `server` is not owned and must outlive the service.
std::unique_ptr<grpc::Service> MakeLeaseService(EtcdServer* server);

}  // namespace etcdpp::server
