#!/usr/bin/env bash
# One entry point for people and CI: installs what is missing (Debian 12, as root), builds, runs.
#   ./dev.sh run [server flags]   build and start the main server on 127.0.0.1:1234
#   ./dev.sh test                 build (release + ASan/UBSan) and run every test
#   ./dev.sh build                build the release tree only
#   ./dev.sh bench [--quick]      run the benchmark suite (see BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")"

JOBS=$(nproc 2>/dev/null || echo 2)
PACKAGES=(cmake ninja-build g++ make pkg-config libgtest-dev libcli11-dev nlohmann-json3-dev libhiredis-dev python3 procps
          clang libclang-rt-14-dev iproute2 redis-server nats-server node-llhttp
          libwslay-dev libssl-dev openssl libnss3-tools libsqlite3-dev libtomlplusplus-dev python3-websockets python3-prometheus-client chromium weechat-headless weechat-plugins)
# Installed only when their command is missing: a machine may have Node.js from elsewhere (with
# npm inside), and Debian's npm package would conflict with it.
COMMANDS=(node:nodejs npm:npm)

deps() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  for c in "${COMMANDS[@]}"; do
    command -v "${c%%:*}" >/dev/null || missing+=("${c#*:}")
  done
  if ((${#missing[@]})); then
    echo "dev.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The browser test's npm packages (playwright-core drives Debian's chromium: it never downloads a
# browser), the web tests' (ws) and the IRC clients test's (irc-framework), installed from the
# committed lock files when missing.
npm_deps() {
  local d
  for d in tests/browser tests/web tests/irc; do
    if [[ ! $d/node_modules/.package-lock.json -nt $d/package-lock.json ]]; then
      echo "dev.sh: npm ci in $d" >&2
      PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$d" --no-audit --no-fund --loglevel=error >/dev/null
    fi
  done
}

configure() {  # dir build-type [extra cmake args]; $TARGETS (optional): build only these
  local dir=$1 type=$2; shift 2
  if [[ ! -f $dir/build.ninja ]]; then
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  fi
  # shellcheck disable=SC2086
  cmake --build "$dir" -j "$JOBS" ${TARGETS:+--target $TARGETS}
}

# Each stage of the test command says how long it took (the whole must stay under 15 minutes on a
# fresh machine).
stage_start=$SECONDS
stage() {
  echo "dev.sh: $1 took $((SECONDS - stage_start)) s (total $SECONDS s)"
  stage_start=$SECONDS
}

build() { deps; configure build Release -DREACTOR_WERROR=ON; }

# The web tests' npm packages (tests/web/package.json: ws), when the lock file is newer than what
# is installed. No browser download: the browser tests use Debian's chromium.
# Each libFuzzer target runs for FUZZ_SECONDS (default 10) from its seed corpus; a crash fails, and
# so does one input taking over 10 s (a hang) or the process passing 1 GiB (unbounded memory). The
# targets run side by side (each is one process on one core; the wall time is their limit, not the
# sum of them).
fuzz_smoke() {
  local targets="framing_fuzz session_fuzz backplane_fuzz http_parser_fuzz ws_fuzz irc_fuzz tls_fuzz auth_fuzz"
  CC=clang CXX=clang++ TARGETS="$targets" configure build-fuzz Debug -DREACTOR_FUZZ=ON -DBUILD_TESTING=OFF
  local seconds=${FUZZ_SECONDS:-10} t failed=0
  local -A work pid
  for t in $targets; do
    work[$t]=$(mktemp -d)
    echo "fuzz: $t for ${seconds}s"
    ./build-fuzz/bin/$t -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=1024 -print_final_stats=0 \
      -artifact_prefix="${work[$t]}/" "${work[$t]}" "fuzz/corpus/${t%_fuzz}" >"${work[$t]}/log" 2>&1 &
    pid[$t]=$!
  done
  for t in $targets; do
    if wait "${pid[$t]}"; then
      echo "fuzz: $t ok ($(grep -o 'Done [0-9]* runs' "${work[$t]}/log" || echo '? runs'))"
      rm -rf "${work[$t]}"
    else
      tail -n 30 "${work[$t]}/log" >&2
      echo "fuzz: $t FAILED (artifacts in ${work[$t]})" >&2
      failed=1
    fi
  done
  return $failed
}

cmd=${1:-run}
shift || true
case $cmd in
  build) build ;;
  run)
    build
    exec ./build/bin/chat-server "$@"
    ;;
  test)
    deps
    npm_deps
    build
    stage "build (release)"
    # The integration tests spend most of their time waiting on timers: the release programs run
    # four at a time (tests/resources/gtest-4.json), the sanitized ones one at a time (beside the
    # node and python tests), as a sanitized program under load may take longer to exit than a test
    # waits (LeakSanitizer's check at exit).
    ctest --no-tests=error --test-dir build --output-on-failure -j "$((JOBS * 2))" \
      --resource-spec-file "$PWD/tests/resources/gtest-4.json"
    stage "tests (release)"
    # ASan+UBSan: the library's unit tests, and the programs under the integration tests (built
    # once, in the release tree; TEST_PROGRAM_DIR points them at the sanitized programs). loadgen and
    # echo-client only drive the servers under test: the tests use the release ones.
    TARGETS="unit_tests chat-server chat-client echo-server" \
      configure build-asan Debug -DREACTOR_SANITIZE=ON -DREACTOR_WERROR=ON
    stage "build (ASan+UBSan)"
    ctest --no-tests=error --test-dir build-asan --output-on-failure -j "$JOBS" -L unit
    # Tests whose subject is a timer (Redis reconnection back-off, the unsubscribe delay, a Redis that
    # never answers, the soft output limit's grace) run once, in the release stage: under a sanitizer
    # they only wait longer (the soft limit's took 32 s under ASan; ChatSlowConsumer covers its close there).
    timers='ReconnectionBacksOff|AnEmptyRoomIsUnsubscribedAfterFiveSeconds|ARedisThatDoesNotAnswerAtStartUp|SoftLimitSparesAShortExcess'
    # The slowest scenarios (a shutdown with slow readers, members that never read, a flood, bad input) run here
    # with two reactors only: their one-reactor twins take the same paths, less the hand-offs, and run
    # in the release stage.
    twins='Reactors/ChatLimitsShutdown\..*/1_threads|Reactors/ChatLimitsMemory\..*/1_threads|Reactors/ChatFaults\.(AFloodingSender|SigtermDelivers|BadInput).*/1reactors'
    TEST_PROGRAM_DIR="$PWD/build-asan/bin" ctest --no-tests=error --test-dir build --output-on-failure -j "$JOBS" -L integration \
      --resource-spec-file "$PWD/tests/resources/gtest-1.json" -E "$timers|$twins"
    stage "tests (ASan+UBSan)"
    # ThreadSanitizer on everything that runs several threads: the reactor pool, cross-thread
    # tasks, the chat server with two reactors, and the Redis backplane's nodes.
    TARGETS="unit_tests chat-server" configure build-tsan Debug -DREACTOR_TSAN=ON -DREACTOR_WERROR=ON
    stage "build (TSan)"
    export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
    ctest --no-tests=error --test-dir build-tsan --output-on-failure -j "$JOBS" -L unit -R 'ReactorPool|Tasks\.|Signals\.|Tls\.|ChatCoreAnswers|ChatCoreHistory|SqliteStore|BlockingPool'
    TEST_PROGRAM_DIR="$PWD/build-tsan/bin" ctest --no-tests=error --test-dir build --output-on-failure -j "$JOBS" -L integration \
      --resource-spec-file "$PWD/tests/resources/gtest-1.json" -E "$timers" \
      -R 'ChatThreads|ChatNative|ChatServer\.|Auth\.|RedisBackplane|RedisHistory|ChatHistory|ChatFaults.*2reactors|ChatFaultsLimits|ChatLimits.*/2|ChatServerWorkers|web\.|IrcFrontEnd.*2reactors|irc\.|tls\.'
    unset TSAN_OPTIONS
    stage "tests (TSan)"
    fuzz_smoke
    stage "fuzz"
    # Benchmark smoke run: every system starts and its numbers are sane (bench/run.py --quick).
    python3 bench/run.py --quick
    stage "benchmark smoke run"
    ;;
  bench)
    # The whole suite side by side (bench/run.py): writes BENCHMARKS.md and bench/plots/*.png;
    # --quick is the smoke run (under 2 minutes, exit 1 when a system misbehaves). Redis, NATS,
    # gnuplot and the IRC servers (ngircd, InspIRCd) are installed when missing; a system that still
    # cannot run is skipped (and said so).
    build
    missing=()
    for tool in redis-server:redis-server nats-server:nats-server gnuplot:gnuplot-nox ngircd:ngircd inspircd:inspircd; do
      command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
    done
    if ((${#missing[@]})); then
      echo "dev.sh: installing ${missing[*]} for the benchmarks" >&2
      # The IRC servers' packages start a daemon on port 6667 where an init system runs: a
      # policy-rc.d that refuses every start keeps them down (the bench runs its own, with its own
      # configuration); ours is removed afterwards, one already there is left alone.
      policy=""
      if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=1
      fi
      { export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null &&
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } ||
        echo "dev.sh: could not install ${missing[*]}; the benchmarks will skip what needs them" >&2
      if [[ -n "$policy" ]]; then rm -f /usr/sbin/policy-rc.d; fi
    fi
    exec python3 bench/run.py "$@"
    ;;
  *) echo "usage: ./dev.sh run|test|build|bench" >&2; exit 2 ;;
esac
