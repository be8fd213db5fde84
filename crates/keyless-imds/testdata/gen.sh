#!/bin/sh
# How the TLS fixtures of the STS client tests were made (once; they are committed). Test keys
# only: never use them for anything else. Needs openssl 3.
#   ca.pem                  a test CA
#   server.pem/.pk8.pem     a server certificate for localhost and 127.0.0.1, from that CA
#   other.pem/.pk8.pem      one for other.example only, from that CA (the wrong-name test)
set -eu
cd "$(dirname "$0")"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -days 36500 -subj "/CN=keyless-imds test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
for pair in "server:DNS:localhost,IP:127.0.0.1" "other:DNS:other.example"; do
  name=${pair%%:*}
  san=${pair#*:}
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" \
    -out "$name.csr" -subj "/CN=$name"
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' "$san" > "$name.ext"
  openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 36500 \
    -extfile "$name.ext" -out "$name.pem"
  openssl pkcs8 -topk8 -nocrypt -in "$name.key" -out "$name.pk8.pem"
  rm -f "$name.csr" "$name.ext" "$name.key"
done
rm -f ca.srl ca.key
