#!/usr/bin/env bash
# A throw-away certificate authority for the TLS tests, made with the openssl command in DIR:
#   ca.pem                 the authority's certificate (what clients are told to trust)
#   server.pem server.key  localhost and 127.0.0.1, organisation "first", signed by the authority
#   second.pem second.key  the same names, organisation "second" (a certificate to reload)
# Elliptic-curve keys (P-256), valid for two days. Usage: make_test_ca.sh DIR
set -euo pipefail
dir=${1:?usage: make_test_ca.sh DIR}
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj "/CN=Reactor Chat test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' >server.ext
for name in server second; do
  org=first
  [[ $name == second ]] && org=second
  key "$name.key"
  openssl req -new -key "$name.key" -out "$name.csr" -subj "/CN=localhost/O=$org" 2>/dev/null
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$name.pem" -days 2 \
    -extfile server.ext 2>/dev/null
done
rm -f ./*.csr server.ext ca.srl
