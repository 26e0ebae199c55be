#!/usr/bin/env bash
# One entry point for people and CI: installs what is missing (Debian 12, as root), builds, runs.
#   ./dev.sh run [server flags]   build and start the main server on 127.0.0.1:1234
#   ./dev.sh test                 build (release, ASan+UBSan, TSan, fuzz) and run every test
#   ./dev.sh build                build the release tree only
#   ./dev.sh bench [--quick]      run the benchmark suite (see BENCHMARKS.md)
set -euo pipefail
cd "$(dirname "$0")"

JOBS=$(nproc 2>/dev/null || echo 2)
# What building takes (and `run`): installed before the first compile.
BUILD_PACKAGES=(cmake ninja-build g++ make pkg-config libgtest-dev libcli11-dev nlohmann-json3-dev libhiredis-dev
                python3 procps clang libclang-rt-14-dev node-llhttp libwslay-dev libssl-dev libsqlite3-dev
                libtomlplusplus-dev)
# What only the tests take: the real servers and clients they talk to, the browser, systemd-analyze
# for the install test. `test` installs these while the release tree compiles.
TEST_PACKAGES=(iproute2 redis-server nats-server openssl libnss3-tools python3-websockets python3-prometheus-client
               chromium weechat-headless weechat-plugins systemd)
# Installed only when their command is missing: a machine may have Node.js from elsewhere (with
# npm inside), and Debian's npm package would conflict with it.
COMMANDS=(node:nodejs npm:npm)

apt_updated=""
install_missing() {  # packages... (and COMMANDS' when given --commands)
  local missing=() p c
  if [[ ${1:-} == --commands ]]; then
    shift
    for c in "${COMMANDS[@]}"; do
      command -v "${c%%:*}" >/dev/null || missing+=("${c#*:}")
    done
  fi
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "dev.sh: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z $apt_updated ]]; then apt-get update -q >/dev/null; apt_updated=1; fi
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

deps() { install_missing "${BUILD_PACKAGES[@]}"; }
test_deps() { install_missing --commands "${TEST_PACKAGES[@]}"; bench_systems; npm_deps; }

# The systems the benchmarks compare with (Redis, NATS, the IRC servers ngircd and InspIRCd) and
# more packages if given. The IRC servers' packages start a daemon on port 6667 where an init
# system runs: a policy-rc.d that refuses every start keeps them down (the benchmarks run their
# own, with their own configuration); ours is removed afterwards, one already there is left alone.
bench_systems() {
  local policy="" status=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy=1
  fi
  install_missing redis-server redis-tools nats-server ngircd inspircd "$@" || status=$?
  if [[ -n "$policy" ]]; then rm -f /usr/sbin/policy-rc.d; fi
  return $status
}

# The browser test's npm packages (playwright-core drives Debian's chromium: it never downloads a
# browser), the web tests' and the benchmarks' (ws) and the IRC clients test's (irc-framework),
# installed from the committed lock files when missing.
npm_deps() {
  local d
  for d in tests/browser tests/web tests/irc bench; do
    if [[ ! $d/node_modules/.package-lock.json -nt $d/package-lock.json ]]; then
      echo "dev.sh: npm ci in $d" >&2
      PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --prefix "$d" --no-audit --no-fund --loglevel=error >/dev/null
    fi
  done
}

# A compiler cache, when the machine has one (Debian's ccache; never installed here): a second
# clone on the same machine then compiles what an earlier one did in a fraction of the time. Paths
# under the clone count from its root, so clones in different places share the cache.
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1
fi

configure() {  # dir build-type [extra cmake args]; $TARGETS (optional): build only these
  local dir=$1 type=$2; shift 2
  if [[ ! -f $dir/build.ninja ]]; then
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" "${launcher[@]}" "$@" >/dev/null
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

# Each libFuzzer target runs for FUZZ_SECONDS (default 10) from its seed corpus; a crash fails, and
# so does one input taking over 10 s (a hang) or the process passing 1 GiB (unbounded memory). The
# targets run side by side (each is one process on one core; the wall time is their limit, not the
# sum of them).
FUZZ_TARGETS="framing_fuzz session_fuzz backplane_fuzz http_parser_fuzz ws_fuzz irc_fuzz tls_fuzz auth_fuzz"
fuzz_tree() { CC=clang CXX=clang++ TARGETS="$FUZZ_TARGETS" configure build-fuzz Debug -DREACTOR_FUZZ=ON -DBUILD_TESTING=OFF; }
fuzz_smoke() {
  local targets=$FUZZ_TARGETS seconds=${FUZZ_SECONDS:-10} t failed=0
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

# ---- the test command ------------------------------------------------------------------------
# Its work is laid out so that the CPU never waits on a timer and a timer never waits on the CPU:
# the test-only packages and npm packages install while the release tree compiles; the sanitizer
# and fuzz trees compile in the background at the lowest priority (nice 19) while the tests, which
# mostly wait on timers, run in the foreground with the CPU theirs whenever they want it. Each
# background job writes build-logs/NAME.log, shown if it fails; each ctest stage is checked by
# tests/check_stage.py (the number of tests tests/stages.txt expects of it; no skip that
# tests/skips.txt does not list).
LOGS=build-logs
declare -A job_pid
background() {  # NAME COMMAND...: runs COMMAND (a function may be one) in the background
  local name=$1; shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  job_pid[$name]=$!
}
# A run that stops early (a failed stage, ^C) takes its background jobs with it, compilers and all.
kill_tree() {
  local child
  for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
stop_background() {
  local name
  for name in "${!job_pid[@]}"; do kill_tree "${job_pid[$name]}"; done
}
joined() {  # NAME: waits for that background job; its failure fails the run, with its log
  if ! wait "${job_pid[$1]}"; then
    tail -n 80 "$LOGS/$1.log" >&2
    echo "dev.sh: $1 failed (all of it in $LOGS/$1.log)" >&2
    exit 1
  fi
  unset "job_pid[$1]"
}
# The sanitizer and fuzz trees, one after the other, each marked built when done.
ASAN_TARGETS="unit_tests chat-server chat-client echo-server"
TSAN_TARGETS="unit_tests chat-server chat-client"
sanitizer_trees() {
  renice -n 19 -p "$BASHPID" >/dev/null
  TARGETS=$ASAN_TARGETS configure build-asan Debug -DREACTOR_SANITIZE=ON -DREACTOR_WERROR=ON
  touch "$LOGS/asan.built"
  TARGETS=$TSAN_TARGETS configure build-tsan Debug -DREACTOR_TSAN=ON -DREACTOR_WERROR=ON
  touch "$LOGS/tsan.built"
  fuzz_tree
  touch "$LOGS/fuzz.built"
}
built() {  # TREE: waits until sanitizer_trees has built it
  while [[ ! -e $LOGS/$1.built ]]; do
    if ! kill -0 "${job_pid[trees]}" 2>/dev/null; then
      joined trees
      [[ -e $LOGS/$1.built ]] && break
      echo "dev.sh: the $1 tree was not built" >&2
      exit 1
    fi
    sleep 1
  done
  echo "dev.sh: the $1 tree is built (build-logs/trees.log)"
}
ctest_stage() {  # NAME CTEST-ARGS...: one stage of tests, checked by tests/check_stage.py
  local name=$1; shift
  ctest --no-tests=error --output-on-failure --output-junit "$PWD/$LOGS/$name.xml" "$@"
  python3 tests/check_stage.py "$name" "$LOGS/$name.xml"
}

test_command() {
  trap stop_background EXIT
  mkdir -p "$LOGS"
  rm -f "$LOGS"/*.built "$LOGS"/*.xml
  deps
  background test-packages test_deps
  build
  stage "build (release)"
  background trees sanitizer_trees
  joined test-packages
  stage "test packages (installed while the release tree compiled)"
  # The integration tests spend most of their time waiting on timers: the release programs run
  # four at a time (tests/resources/gtest-4.json).
  ctest_stage release --test-dir build -j "$((JOBS * 2))" --resource-spec-file "$PWD/tests/resources/gtest-4.json"
  stage "tests (release)"
  # Benchmark smoke run: every system starts and its numbers are sane (bench/run.py --quick).
  python3 bench/run.py --quick
  stage "benchmark smoke run"

  # ASan+UBSan: the library's unit tests, and the programs under the integration tests (built
  # once, in the release tree; TEST_PROGRAM_DIR points them at the sanitized programs, and a
  # program missing there fails the test). loadgen and echo-client only drive the servers under
  # test: the tests always use the release ones.
  built asan
  stage "build (ASan+UBSan, the rest of it)"
  ctest_stage asan-unit --test-dir build-asan -j "$JOBS" -L unit
  # Tests whose subject is a timer (Redis reconnection back-off, the unsubscribe delay, a Redis that
  # never answers, the soft output limit's grace) run once, in the release stage: under a sanitizer
  # they only wait longer (the soft limit's took 32 s under ASan; ChatSlowConsumer covers its close there).
  timers='ReconnectionBacksOff|AnEmptyRoomIsUnsubscribedAfterFiveSeconds|ARedisThatDoesNotAnswerAtStartUp|SoftLimitSparesAShortExcess'
  # The slowest scenarios (a shutdown with slow readers, members that never read, a flood, bad input) run here
  # with two reactors only: their one-reactor twins take the same paths, less the hand-offs, and run
  # in the release stage.
  twins='Reactors/ChatLimitsShutdown\..*/1_threads|Reactors/ChatLimitsMemory\..*/1_threads|Reactors/ChatFaults\.(AFloodingSender|SigtermDelivers|BadInput).*/1reactors'
  # Two at a time (tests/resources/gtest-2.json), beside one node or Python test: the TSan programs,
  # some ten times slower than release ones, run one at a time below.
  TEST_PROGRAM_DIR="$PWD/build-asan/bin" ctest_stage asan-integration --test-dir build -j "$((JOBS + 1))" -L integration \
    --resource-spec-file "$PWD/tests/resources/gtest-2.json" -E "$timers|$twins"
  stage "tests (ASan+UBSan)"

  # ThreadSanitizer on everything that runs several threads: the reactor pool, cross-thread
  # tasks, the chat server with two reactors, and the Redis backplane's nodes.
  built tsan
  stage "build (TSan, the rest of it)"
  export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1"
  ctest_stage tsan-unit --test-dir build-tsan -j "$JOBS" -L unit \
    -R 'ReactorPool|Tasks\.|Signals\.|Tls\.|ChatCoreAnswers|ChatCoreHistory|SqliteStore|BlockingPool'
  # One at a time (tests/resources/gtest-1.json), beside one node or Python test: two TSan servers
  # at once made the flood and bad-input scenarios wait seconds for the CPU.
  TEST_PROGRAM_DIR="$PWD/build-tsan/bin" ctest_stage tsan-integration --test-dir build -j "$JOBS" -L integration \
    --resource-spec-file "$PWD/tests/resources/gtest-1.json" -E "$timers" \
    -R 'ChatThreads|ChatNative|ChatServer\.|Auth\.|RedisBackplane|RedisHistory|ChatHistory|ChatFaults.*2reactors|ChatFaultsLimits|ChatLimits.*/2|ChatServerWorkers|web\.|IrcFrontEnd.*2reactors|irc\.|tls\.'
  unset TSAN_OPTIONS
  stage "tests (TSan)"

  built fuzz
  joined trees
  stage "build (fuzz, the rest of it)"
  fuzz_smoke
  stage "fuzz"
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
    test_command
    ;;
  bench)
    # The whole suite side by side (bench/run.py): writes BENCHMARKS.md and bench/plots/*.png;
    # --quick is the smoke run (under 2 minutes, exit 1 when a system misbehaves or cannot run).
    # Redis, NATS, gnuplot and the IRC servers (ngircd, InspIRCd) are installed when missing; in a
    # full run a system that still cannot run is skipped (and said so).
    build
    bench_systems gnuplot-nox || echo "dev.sh: could not install every system; the benchmarks will skip what needs them" >&2
    exec python3 bench/run.py "$@"
    ;;
  *) echo "usage: ./dev.sh run|test|build|bench" >&2; exit 2 ;;
esac
