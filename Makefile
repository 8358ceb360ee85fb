# The two commands of the README:
#   make run   install what is missing, build (Release), start a single-node
#              server on 127.0.0.1:2379 with data dir default.etcdpp
#   make test  install what is missing, build, run every test
# A plain `make` builds the server as build/etcdpp.
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps configure server build run test test-patroni clean

all: server

deps:
	@bash tools/install-deps.sh

$(BUILD_DIR)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

configure: deps $(BUILD_DIR)/build.ninja

# Just the server binary, build/etcdpp.
server: configure
	cmake --build $(BUILD_DIR) --target etcdpp -j $(JOBS)

# Everything: server, tests, tools, benchmarks.
build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: server
	./$(BUILD_DIR)/etcdpp --name default --data-dir default.etcdpp \
	  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) --timeout 900

# Patroni (2 x PostgreSQL 15) on etcdpp as its etcd3 DCS: election, streaming
# replica, failover after SIGKILL of the leader. About 30 s; installs the
# Debian packages patroni and postgresql if missing. Not part of `make test`.
test-patroni: server
	python3 tests/patroni/patroni_test.py --bin $(BUILD_DIR)/etcdpp

clean:
	rm -rf $(BUILD_DIR)
