// rob_check: runs every checker over a saved history and prints one verdict
// per line, then `N passed, M failed` (SKIP lines are neither; UNDECIDED
// counts as failed: the run did not show the promise holds).
//
//   rob_check --history DIR/history.jsonl [--max-steps N] [--expect-fail NAME]
//
// Exit code 0 when nothing failed. With --expect-fail NAME (a planted
// anomaly), exit 0 exactly when verdict NAME is FAIL.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "checker.h"

using etcdpp::robustness::CheckAll;
using etcdpp::robustness::LinearizabilityOptions;
using etcdpp::robustness::ReadHistoryFile;
using etcdpp::robustness::Record;
using etcdpp::robustness::Verdict;
using etcdpp::robustness::VerdictKindName;

int main(int argc, char** argv) {
  std::string history, expect_fail;
  LinearizabilityOptions opt;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--history") history = argv[i + 1];
    else if (a == "--max-steps") opt.max_steps_per_key = std::strtoll(argv[i + 1], nullptr, 10);
    else if (a == "--expect-fail") expect_fail = argv[i + 1];
    else {
      fprintf(stderr, "unknown flag %s\n", argv[i]);
      return 2;
    }
  }
  if (history.empty()) {
    fprintf(stderr, "usage: %s --history FILE [--max-steps N] [--expect-fail NAME]\n", argv[0]);
    return 2;
  }
  std::vector<Record> records;
  std::string err;
  if (!ReadHistoryFile(history, &records, &err)) {
    fprintf(stderr, "rob_check: %s\n", err.c_str());
    return 2;
  }
  int passed = 0, failed = 0;
  bool expected_seen = false;
  for (const Verdict& v : CheckAll(records, opt)) {
    printf("%s %s: %s\n", VerdictKindName(v.kind), v.name.c_str(), v.detail.c_str());
    if (v.kind == Verdict::kPass) ++passed;
    if (v.kind == Verdict::kFail || v.kind == Verdict::kUndecided) ++failed;
    if (v.kind == Verdict::kFail && v.name == expect_fail) expected_seen = true;
  }
  printf("%d passed, %d failed\n", passed, failed);
  fflush(stdout);
  if (!expect_fail.empty()) {
    printf("expected anomaly: checker %s %s\n", expect_fail.c_str(),
           expected_seen ? "reported it (as it must)" : "MISSED it");
    return expected_seen ? 0 : 1;
  }
  return failed == 0 ? 0 : 1;
}
