#!/bin/sh
# How the fixtures in this folder were made (once; they are committed). Test keys only: never
# use them for anything else. Needs openssl 3 and python3.
set -eu
cd "$(dirname "$0")"

# RSA signing keys (ring cannot generate RSA keys). The 1024-bit one is for the refusal tests.
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048.pk8.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa2048-other.pk8.pem
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:1024 -out rsa1024.pk8.pem
openssl pkcs8 -topk8 -nocrypt -in rsa2048.pk8.pem -outform DER -out rsa2048.pk8.der

# A token signed by the 1024-bit key (ring will not sign with it) and that key as a JWKS.
python3 - <<'PY'
import base64, json, subprocess

def b64(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()

text = subprocess.run(["openssl", "rsa", "-in", "rsa1024.pk8.pem", "-noout", "-modulus"],
                      check=True, capture_output=True, text=True).stdout
n = bytes.fromhex(text.strip().split("=", 1)[1])
jwks = {"keys": [{"kty": "RSA", "kid": "weak", "alg": "RS256", "use": "sig",
                  "n": b64(n), "e": b64((65537).to_bytes(3, "big"))}]}
with open("rsa1024.jwks.json", "w") as f:
    json.dump(jwks, f)
header = {"alg": "RS256", "kid": "weak", "typ": "JWT"}
claims = {"iss": "https://issuer.test", "sub": "system:serviceaccount:default:weak",
          "aud": ["sts.amazonaws.com"], "iat": 1700000000, "nbf": 1700000000, "exp": 1700003600}
signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", "rsa1024.pk8.pem"],
                     input=signing_input.encode(), check=True, capture_output=True).stdout
with open("rsa1024.token", "w") as f:
    f.write(signing_input + "." + b64(sig))
PY

# A test CA and a server certificate for localhost and 127.0.0.1 (the HTTPS fetch test).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem \
  -days 36500 -subj "/CN=keyless-oidc test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr \
  -subj "/CN=localhost"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n' > server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 36500 \
  -extfile server.ext -out server.pem
openssl pkcs8 -topk8 -nocrypt -in server.key -out server.pk8.pem
rm -f server.csr server.ext ca.srl server.key ca.key
