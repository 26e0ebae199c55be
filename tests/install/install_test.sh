#!/usr/bin/env bash
# cmake --install into a scratch prefix: the programs, the page, the sample configuration and the
# systemd unit land where README says; the installed server checks the installed configuration; the
# unit passes systemd-analyze verify (pointed at the scratch prefix's program).
#   install_test.sh BUILD_DIR
set -euo pipefail
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
fail() { echo "install_test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/chat-server bin/chat-client bin/echo-server bin/echo-client \
         share/reactor-chat/web/index.html share/reactor-chat/web/app.js share/reactor-chat/web/style.css \
         etc/reactor-chat/chat-server.toml lib/systemd/system/chat-server.service \
         share/doc/reactor-chat/README.md share/doc/reactor-chat/PROTOCOL.md; do
  [[ -e $prefix/$f ]] || fail "$f is not installed"
done
[[ -x $prefix/bin/chat-server ]] || fail "bin/chat-server is not executable"

out=$("$prefix/bin/chat-server" --config "$prefix/etc/reactor-chat/chat-server.toml" --check-config)
[[ $out == "chat-server: configuration OK ($prefix/etc/reactor-chat/chat-server.toml)" ]] || fail "check-config said: $out"

unit=$prefix/lib/systemd/system/chat-server.service
configured_prefix=$(grep -oP '^ExecStart=\K\S+(?=/bin/chat-server )' "$unit") || fail "no ExecStart in the unit"
for option in ProtectSystem=strict NoNewPrivileges=yes LimitNOFILE= DynamicUser=yes StateDirectory=reactor-chat \
              "chat-server --config /.*/reactor-chat/chat-server.toml$" "WantedBy=multi-user.target"; do
  grep -q -- "$option" "$unit" || fail "the unit has no $option"
done
# systemd-analyze (Debian's systemd package, which dev.sh test installs) is required: without it
# the unit's syntax would go unchecked.
command -v systemd-analyze >/dev/null || fail "systemd-analyze not found (apt install systemd): the unit cannot be verified"
sed "s|^ExecStart=$configured_prefix/bin/|ExecStart=$prefix/bin/|" "$unit" >"$prefix/chat-server.service"
systemd-analyze verify "$prefix/chat-server.service" || fail "systemd-analyze verify refused the unit"
echo "install_test: ok ($prefix)"
