// Keys held in a PKCS#11 token (an HSM, a TPM behind a PKCS#11 module, a
// smart card, or SoftHSM2 in tests). LibTorch-free; talks to the token's
// module through the PKCS#11 v2.40 C API (OASIS, "PKCS #11 Cryptographic
// Token Interface Base Specification"), and for TLS through OpenSSL's ENGINE
// interface with libp11's "pkcs11" engine (Debian libengine-pkcs11-openssl).
//
// Why two routes (docs/security.md, "Keys and their places"):
//  * the model-signing key is Ed25519, and libp11 0.4.12 (Debian 12) has no
//    EdDSA, so SigningKey::FromPkcs11 signs with C_Sign(CKM_EDDSA) directly;
//  * gRPC 1.51's TLS stack takes the private key as a string and, when the
//    string is "engine:<engine id>:<key id>", loads it with
//    ENGINE_load_private_key; there is no private-key offload API in that
//    version. TLS keys are therefore EC P-256 keys reached through libp11,
//    which OpenSSL then uses for every handshake signature.
//
// Naming a key: a PKCS#11 URI (RFC 7512), e.g.
//
//   pkcs11:token=fedge;object=model-signing?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=/run/fedge/pin
//
// Path attributes used: token (the token label), object (the key's
// CKA_LABEL), id (its CKA_ID, percent-encoded bytes). Query attributes:
// module-path (the PKCS#11 module; required), pin-value (the user PIN) or
// pin-source (a file holding it; a trailing newline is ignored). Other
// attributes are INVALID_ARGUMENT, so a misspelled one does not silently
// select another key.
//
// Key material never leaves the token: keys made by GenerateKeyPair are
// CKA_SENSITIVE and not CKA_EXTRACTABLE, and nothing here reads a private
// key's value.
//
// Thread safety: Pkcs11Session serializes its calls with a mutex and may be
// shared between threads. A module is initialized once per process and never
// finalized (the engine shares it).
#ifndef FEDGE_MODELS_PKCS11_H_
#define FEDGE_MODELS_PKCS11_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace fedge::models {

// True when `key_ref` names a token key ("pkcs11:..."), not a file.
bool IsPkcs11Uri(std::string_view key_ref);
// What a config key holding a key reference checks before anything starts:
// OK for a file path (its loader names a missing file), Pkcs11Uri::Parse's
// error for a malformed URI.
absl::Status CheckKeyRef(std::string_view key_ref);

struct Pkcs11Uri {
  std::string token;        // token label; empty: the first token with the key
  std::string object;       // the key's CKA_LABEL
  std::string id;           // the key's CKA_ID (raw bytes)
  std::string module_path;  // the PKCS#11 module (shared library)
  std::string pin;          // the user PIN (from pin-value or pin-source)

  // INVALID_ARGUMENT naming what is wrong: not a pkcs11: URI, an unknown or
  // repeated attribute, a bad percent escape, no module-path, neither object
  // nor id, an unreadable pin-source.
  static absl::StatusOr<Pkcs11Uri> Parse(std::string_view uri);
  // The URI without the module and the PIN (for logs and for the engine).
  std::string KeyUri() const;
};

enum class TokenKeyType {
  kEd25519,  // CKK_EC_EDWARDS: model signing (RFC 8032)
  kEcP256,   // CKK_EC on secp256r1: TLS and certificate signing
};

// An open session on one token, logged in as the user when the URI has a
// PIN. Object handles are the module's CK_OBJECT_HANDLE values.
class Pkcs11Session {
 public:
  // Loads the module (once per process), finds the token, opens a session
  // and logs in. NOT_FOUND when no token has the label; UNAUTHENTICATED on a
  // wrong PIN; FAILED_PRECONDITION when the module does not load.
  static absl::StatusOr<std::shared_ptr<Pkcs11Session>> Open(const Pkcs11Uri& uri);
  ~Pkcs11Session();
  Pkcs11Session(const Pkcs11Session&) = delete;
  Pkcs11Session& operator=(const Pkcs11Session&) = delete;

  // Generates a key pair on the token, both halves labelled `uri.object`
  // (and with CKA_ID `uri.id` when set). The private key is sensitive, not
  // extractable, and may only sign. ALREADY_EXISTS when a private key with
  // that label is on the token already.
  absl::Status GenerateKeyPair(const Pkcs11Uri& uri, TokenKeyType type);
  // The handle of the private (or public) key the URI names; NOT_FOUND when
  // there is none, FAILED_PRECONDITION when several match.
  absl::StatusOr<uint64_t> FindKey(const Pkcs11Uri& uri, bool private_key);
  // The raw bytes of one attribute of an object. PERMISSION_DENIED when the
  // token refuses to reveal it (CKR_ATTRIBUTE_SENSITIVE: a private key's
  // CKA_VALUE), NOT_FOUND when the object has no such attribute.
  absl::StatusOr<std::string> Attribute(uint64_t object, unsigned long type);
  // C_Sign with `mechanism` (no parameters) over `data`.
  absl::StatusOr<std::string> Sign(uint64_t key, unsigned long mechanism, std::string_view data);

  const std::string& token_label() const { return token_label_; }

  struct Module;  // a loaded module (opaque; pkcs11.cc)

 private:
  Pkcs11Session(const Module* module, unsigned long session, std::string token_label)
      : module_(module), session_(session), token_label_(std::move(token_label)) {}

  const Module* module_;
  unsigned long session_;
  std::string token_label_;
  std::mutex mu_;
};

// The string gRPC's TLS credentials take as the private key of the token
// key `uri` names: "engine:fedge-pkcs11:<KeyUri()>". Configures libp11's
// engine with the URI's module and PIN first and checks the key loads.
// "fedge-pkcs11" is a shim engine that only loads keys through libp11's:
// gRPC makes the engine it is given the default for every algorithm, which
// done to libp11's own engine breaks OpenSSL's software keys in the whole
// process. One module per process: FAILED_PRECONDITION when the engine
// already serves another.
absl::StatusOr<std::string> GrpcEnginePrivateKey(const Pkcs11Uri& uri);

}  // namespace fedge::models

#endif  // FEDGE_MODELS_PKCS11_H_
