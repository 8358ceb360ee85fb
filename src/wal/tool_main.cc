// etcdpp-wal-tool: look at a WAL directory, or cut it deliberately.
//
//   etcdpp-wal-tool verify DIR            summary per segment; exit 1 on damage
//   etcdpp-wal-tool dump DIR              every record
//   etcdpp-wal-tool truncate DIR FILE OFFSET
//        drop everything from FILE at OFFSET on (later segments are renamed
//        *.broken). For when Open reported DataLoss and the operator accepts
//        losing the rest of the log (the node can then catch up from peers).
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "wal/wal.h"

namespace {

int Usage() {
  std::fprintf(stderr,
               "usage: etcdpp-wal-tool verify DIR\n"
               "       etcdpp-wal-tool dump DIR\n"
               "       etcdpp-wal-tool truncate DIR FILE OFFSET\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage();
  const std::string cmd = argv[1];
  const std::string dir = argv[2];
  if (cmd == "verify" || cmd == "dump") {
    std::string out;
    absl::Status s = etcdpp::wal::Describe(dir, cmd == "dump", &out);
    std::fputs(out.c_str(), stdout);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", std::string(s.ToString()).c_str());
      return 1;
    }
    std::printf("OK\n");
    return 0;
  }
  if (cmd == "truncate" && argc == 5) {
    uint64_t offset = 0;
    if (!absl::SimpleAtoi(argv[4], &offset)) return Usage();
    absl::Status s = etcdpp::wal::TruncateAt(dir, argv[3], offset);
    if (!s.ok()) {
      std::fprintf(stderr, "%s\n", std::string(s.ToString()).c_str());
      return 1;
    }
    std::printf("truncated %s at %llu\n", argv[3], static_cast<unsigned long long>(offset));
    return 0;
  }
  return Usage();
}
