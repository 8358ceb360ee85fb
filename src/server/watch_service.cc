#include "server/watch_service.h"

#include <deque>

#include "absl/synchronization/mutex.h"
#include "mvcc/watch.h"
#include "rpc.grpc.pb.h"

namespace etcdpp::server {
namespace {

using etcdserverpb::WatchRequest;
using etcdserverpb::WatchResponse;

// One stream's outgoing queue: the hub appends, gRPC writes one at a time.
//
// Lifetime: shared by the reactor and the hub (until CloseStream). Finish is
// called exactly once, never while a write is being started, and after it the
// outbox never touches the reactor again, so the reactor may be deleted in
// OnDone while the hub still holds the outbox.
class WatchOutbox final : public mvcc::WatchSink {
 public:
  WatchOutbox(EtcdServer* server, grpc::ServerBidiReactor<WatchRequest, WatchResponse>* reactor)
      : server_(server), reactor_(reactor) {}

  bool HasRoom() const override {
    absl::MutexLock l(&mu_);
    return bytes_ < kWatchStreamBufferBytes;
  }

  void Send(WatchResponse r) override {
    server_->FillHeader(r.mutable_header(), /*with_revision=*/false);
    // Sized once, outside the lock (protobuf recomputes sizes on every call).
    const int64_t size = static_cast<int64_t>(r.ByteSizeLong());
    absl::MutexLock l(&mu_);
    if (closed_) return;
    bytes_ += size;
    queue_.push_back(std::move(r));
    sizes_.push_back(size);
    if (!writing_) StartNextLocked();
  }

  // Reactions (gRPC threads).
  void OnWriteDone(bool ok, mvcc::WatchHub* hub) {
    bool wake = false, finish = false, read = false;
    {
      absl::MutexLock l(&mu_);
      const bool was_full = bytes_ >= kWatchStreamBufferBytes;
      bytes_ -= current_size_;
      writing_ = false;
      if (!ok) Close();
      if (closed_) {
        finish = !finished_;
        finished_ = true;
      } else {
        if (!queue_.empty()) StartNextLocked();
        wake = was_full && bytes_ < kWatchStreamBufferBytes;
        if (read_paused_ && bytes_ < kWatchStreamBufferBytes) {
          read_paused_ = false;
          read = true;
        }
      }
    }
    if (wake) hub->Wake();
    if (read) StartRead();
    if (finish) reactor_->Finish(grpc::Status::OK);
  }

  // The call was cancelled (client gone, deadline, server shutdown).
  void OnCancel() {
    bool finish = false;
    {
      absl::MutexLock l(&mu_);
      Close();
      if (!writing_ && !finished_) finish = finished_ = true;
    }
    if (finish) {
      reactor_->Finish(grpc::Status(grpc::StatusCode::CANCELLED, "etcdserver: watch canceled"));
    }
  }

  // After a request was handed to the hub: keep reading unless the client
  // floods us with requests while not reading our answers.
  void ReadNextOrPause() {
    {
      absl::MutexLock l(&mu_);
      if (closed_) return;
      if (bytes_ >= 2 * kWatchStreamBufferBytes) {
        read_paused_ = true;
        return;
      }
    }
    StartRead();
  }

  WatchRequest* request() { return &request_; }

 private:
  void Close() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    closed_ = true;
    queue_.clear();
    sizes_.clear();
    bytes_ = writing_ ? current_size_ : 0;
  }
  void StartRead() {
    {
      absl::MutexLock l(&mu_);
      if (finished_) return;
    }
    reactor_->StartRead(&request_);
  }
  // The write is started under mu_ so that Finish (which needs !writing_)
  // can never overtake it; gRPC runs the reaction later, on its own thread.
  void StartNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    current_ = std::move(queue_.front());
    current_size_ = sizes_.front();
    queue_.pop_front();
    sizes_.pop_front();
    writing_ = true;
    // More responses queued behind this one: let gRPC coalesce them into
    // fewer TCP writes (the last one in the queue goes unhinted and flushes).
    reactor_->StartWrite(&current_, queue_.empty() ? grpc::WriteOptions()
                                                   : grpc::WriteOptions().set_buffer_hint());
  }

  EtcdServer* const server_;
  grpc::ServerBidiReactor<WatchRequest, WatchResponse>* const reactor_;
  mutable absl::Mutex mu_;
  std::deque<WatchResponse> queue_ ABSL_GUARDED_BY(mu_);
  int64_t bytes_ ABSL_GUARDED_BY(mu_) = 0;  // queued + in flight
  std::deque<int64_t> sizes_ ABSL_GUARDED_BY(mu_);  // of queue_, in step
  WatchResponse current_ ABSL_GUARDED_BY(mu_);
  int64_t current_size_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  WatchRequest request_;  // the reactor's one read in flight
};

class WatchReactor final : public grpc::ServerBidiReactor<WatchRequest, WatchResponse> {
 public:
  WatchReactor(EtcdServer* server, mvcc::WatchHub* hub)
      : hub_(hub), outbox_(std::make_shared<WatchOutbox>(server, this)) {
    stream_id_ = hub_->OpenStream(outbox_);
    StartRead(outbox_->request());
  }

  void OnReadDone(bool ok) override {
    // A client that closes its sending side keeps receiving, as with etcd:
    // the stream ends when the call is cancelled.
    if (!ok) return;
    hub_->Request(stream_id_, std::move(*outbox_->request()));
    outbox_->request()->Clear();
    outbox_->ReadNextOrPause();
  }
  void OnWriteDone(bool ok) override { outbox_->OnWriteDone(ok, hub_); }
  void OnCancel() override { outbox_->OnCancel(); }
  void OnDone() override {
    hub_->CloseStream(stream_id_);
    delete this;
  }

 private:
  mvcc::WatchHub* const hub_;
  std::shared_ptr<WatchOutbox> outbox_;
  int64_t stream_id_ = 0;
};

class WatchService final : public etcdserverpb::Watch::CallbackService {
 public:
  explicit WatchService(EtcdServer* s) : s_(s) {}

  grpc::ServerBidiReactor<WatchRequest, WatchResponse>* Watch(
      grpc::CallbackServerContext* ctx) override {
    return new WatchReactor(s_, s_->watch_hub());
  }

 private:
  EtcdServer* s_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeWatchService(EtcdServer* server) {
  return std::make_unique<WatchService>(server);
}

}  // namespace etcdpp::server
