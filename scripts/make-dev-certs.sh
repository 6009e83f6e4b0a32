#!/usr/bin/env bash
# Development credentials for a fedge deployment, made with the openssl
# command line only. NOT for production: the CA key sits beside the
# certificates it signs.
#
#   scripts/make-dev-certs.sh [--force] [--days N] OUT_DIR [CLIENT_ID ...]
#
# Writes into OUT_DIR (created 0700 when missing):
#   ca.key, ca.pem                  development CA (EC P-256)
#   server.key, server.pem          aggregator TLS certificate, CN=localhost,
#                                   SAN DNS:localhost, IP:127.0.0.1, serverAuth
#   client-<id>.key, client-<id>.pem  one per CLIENT_ID, CN=<id>, clientAuth
#                                   (mutual TLS: the aggregator reads the
#                                   device id from the CN)
#   signing.key, signing.pub        the aggregator's Ed25519 model-signing key
#                                   (PKCS#8 / SubjectPublicKeyInfo PEM, what
#                                   fedge::models::SigningKey::LoadPem and
#                                   VerifyingKey::LoadPem read)
# Private keys are mode 0600, certificates and public keys 0644.
#
# Idempotent: existing files are kept. A certificate is (re)issued when it is
# missing or when the CA was created in this run; a missing key is created.
# --force makes everything anew. Client ids may use letters, digits, '.',
# '_' and '-'. Never commit the output (.gitignore covers certs/ and *.key).
set -euo pipefail

usage() {
  echo "usage: $0 [--force] [--days N] OUT_DIR [CLIENT_ID ...]" >&2
  exit 2
}

force=0
days=825
while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) force=1; shift ;;
    --days) [[ $# -ge 2 && "$2" =~ ^[1-9][0-9]*$ ]] || usage; days="$2"; shift 2 ;;
    --help|-h) usage ;;
    --) shift; break ;;
    -*) echo "unknown option: $1" >&2; usage ;;
    *) break ;;
  esac
done
[[ $# -ge 1 ]] || usage
out="$1"
shift
for id in "$@"; do
  if [[ ! "$id" =~ ^[A-Za-z0-9._-]+$ || "$id" == .* ]]; then
    echo "invalid client id '$id': use letters, digits, '.', '_' and '-' (not leading '.')" >&2
    exit 2
  fi
done
command -v openssl >/dev/null || { echo "openssl is not on PATH" >&2; exit 1; }

if [[ ! -d "$out" ]]; then
  mkdir -p "$out"
  chmod 0700 "$out"
fi
umask 077
work="$(mktemp -d "$out/.make-dev-certs.XXXXXX")"
trap 'rm -rf "$work"' EXIT

made=()
kept=()

# new_key FILE: an EC P-256 private key, unless FILE exists (and no --force).
# Prints nothing; records what it did.
new_key() {
  local file="$1"
  if [[ $force -eq 0 && -s "$file" ]]; then
    kept+=("$file")
    return 1
  fi
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$work/key.pem" 2>/dev/null
  chmod 0600 "$work/key.pem"
  mv -f "$work/key.pem" "$file"
  made+=("$file")
  return 0
}

# issue CERT KEY SUBJECT EXTENSIONS: a certificate for KEY signed by the CA.
issue() {
  local cert="$1" key="$2" subject="$3" extensions="$4"
  printf '%b\n' "$extensions" > "$work/ext.cnf"
  openssl req -new -key "$key" -subj "$subject" -out "$work/req.csr"
  openssl x509 -req -in "$work/req.csr" -CA "$out/ca.pem" -CAkey "$out/ca.key" \
    -set_serial "0x$(openssl rand -hex 16)" -days "$days" -sha256 \
    -extfile "$work/ext.cnf" -out "$work/cert.pem" 2>/dev/null
  chmod 0644 "$work/cert.pem"
  mv -f "$work/cert.pem" "$cert"
  made+=("$cert")
}

# --- CA ---------------------------------------------------------------------
ca_new=0
if new_key "$out/ca.key"; then ca_new=1; fi
if [[ $force -eq 1 || $ca_new -eq 1 || ! -s "$out/ca.pem" ]]; then
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days" \
    -subj "/O=fedge/CN=fedge development CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$work/ca.pem"
  chmod 0644 "$work/ca.pem"
  mv -f "$work/ca.pem" "$out/ca.pem"
  made+=("$out/ca.pem")
  ca_new=1
else
  kept+=("$out/ca.pem")
fi

leaf_ext="basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash"

# --- server -----------------------------------------------------------------
key_new=0
if new_key "$out/server.key"; then key_new=1; fi
if [[ $ca_new -eq 1 || $key_new -eq 1 || ! -s "$out/server.pem" ]]; then
  issue "$out/server.pem" "$out/server.key" "/O=fedge/CN=localhost" \
    "$leaf_ext\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1"
else
  kept+=("$out/server.pem")
fi

# --- clients ----------------------------------------------------------------
for id in "$@"; do
  key_new=0
  if new_key "$out/client-$id.key"; then key_new=1; fi
  if [[ $ca_new -eq 1 || $key_new -eq 1 || ! -s "$out/client-$id.pem" ]]; then
    issue "$out/client-$id.pem" "$out/client-$id.key" "/O=fedge/CN=$id" \
      "$leaf_ext\nextendedKeyUsage=clientAuth"
  else
    kept+=("$out/client-$id.pem")
  fi
done

# --- model signing key ------------------------------------------------------
signing_new=0
if [[ $force -eq 1 || ! -s "$out/signing.key" ]]; then
  signing_new=1
  openssl genpkey -algorithm ed25519 -out "$work/signing.key" 2>/dev/null
  chmod 0600 "$work/signing.key"
  mv -f "$work/signing.key" "$out/signing.key"
  made+=("$out/signing.key")
else
  kept+=("$out/signing.key")
fi
if [[ $signing_new -eq 1 || ! -s "$out/signing.pub" ]]; then
  openssl pkey -in "$out/signing.key" -pubout -out "$work/signing.pub"
  chmod 0644 "$work/signing.pub"
  mv -f "$work/signing.pub" "$out/signing.pub"
  made+=("$out/signing.pub")
else
  kept+=("$out/signing.pub")
fi

for f in "${made[@]}"; do echo "made  $f"; done
for f in "${kept[@]+"${kept[@]}"}"; do echo "kept  $f"; done
