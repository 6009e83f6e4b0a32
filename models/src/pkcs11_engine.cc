// libp11's "pkcs11" OpenSSL ENGINE, configured once per process. The ENGINE
// API is deprecated in OpenSSL 3 in favour of providers, but Debian 12 ships
// no PKCS#11 provider and gRPC 1.51 loads token keys only through an engine
// (docs/security.md), so this file opts out of the deprecation warnings.
#define OPENSSL_SUPPRESS_DEPRECATED

#include "pkcs11_engine.h"

#include <openssl/engine.h>
#include <openssl/err.h>

#include <mutex>

#include "absl/strings/str_cat.h"

namespace fedge::models {
namespace internal {
namespace {

constexpr char kEngineId[] = "pkcs11";
// The engine gRPC is given (see GrpcEnginePrivateKey).
constexpr char kShimEngineId[] = "fedge-pkcs11";

struct EngineState {
  std::mutex mu;
  ENGINE* engine = nullptr;  // a functional reference held for the process's life
  std::string module_path;
};

EngineState& State() {
  static auto* state = new EngineState();
  return *state;
}

// The engine, initialized on `uri`'s module, with `uri`'s PIN set.
absl::StatusOr<ENGINE*> ConfiguredEngine(const Pkcs11Uri& uri) {
  EngineState& state = State();
  std::lock_guard<std::mutex> lock(state.mu);
  if (state.engine == nullptr) {
    ENGINE_load_dynamic();
    ENGINE* engine = ENGINE_by_id(kEngineId);
    if (engine == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "OpenSSL cannot load the 'pkcs11' engine (install libengine-pkcs11-openssl): ",
          OpenSslError()));
    }
    if (ENGINE_ctrl_cmd_string(engine, "MODULE_PATH", uri.module_path.c_str(), 0) != 1 ||
        ENGINE_init(engine) != 1) {
      std::string error = OpenSslError();
      ENGINE_free(engine);
      return absl::FailedPreconditionError(absl::StrCat(
          "the pkcs11 engine cannot initialize module '", uri.module_path, "': ", error));
    }
    ENGINE_free(engine);  // keep only the functional reference ENGINE_init took
    state.engine = engine;
    state.module_path = uri.module_path;
  } else if (state.module_path != uri.module_path) {
    return absl::FailedPreconditionError(
        absl::StrCat("the pkcs11 engine already serves module '", state.module_path,
                     "'; one PKCS#11 module per process, not also '", uri.module_path, "'"));
  }
  if (!uri.pin.empty() && ENGINE_ctrl_cmd_string(state.engine, "PIN", uri.pin.c_str(), 0) != 1) {
    return absl::InternalError(absl::StrCat("the pkcs11 engine refused the PIN: ", OpenSslError()));
  }
  return state.engine;
}

// gRPC 1.51 loads an "engine:<id>:<key>" private key with ENGINE_by_id, then
// calls ENGINE_set_default(engine, ENGINE_METHOD_ALL). Done on libp11's
// engine, that makes libp11 the process's default for every EC, RSA and
// EVP_PKEY operation, and OpenSSL's own software keys stop working (EC key
// generation fails with "unknown group", signing with a file key with
// "command not supported"). gRPC is therefore given a shim engine that can
// only load private keys, by asking libp11's engine. The shim has no
// methods, so making it the default changes nothing; the key it returns
// carries libp11's methods itself.
EVP_PKEY* ShimLoadPrivateKey(ENGINE*, const char* key_id, UI_METHOD* ui, void* callback_data) {
  EngineState& state = State();
  ENGINE* engine;
  {
    std::lock_guard<std::mutex> lock(state.mu);
    engine = state.engine;
  }
  if (engine == nullptr) return nullptr;
  return ENGINE_load_private_key(engine, key_id, ui, callback_data);
}

absl::Status RegisterShim() {
  static const absl::Status registered = [] {
    ENGINE* shim = ENGINE_new();
    if (shim == nullptr || ENGINE_set_id(shim, kShimEngineId) != 1 ||
        ENGINE_set_name(shim, "fedge: PKCS#11 private keys through libp11, no methods") != 1 ||
        ENGINE_set_load_privkey_function(shim, &ShimLoadPrivateKey) != 1 ||
        ENGINE_add(shim) != 1) {
      std::string error = OpenSslError();
      if (shim != nullptr) ENGINE_free(shim);
      return absl::InternalError(absl::StrCat("cannot register the fedge-pkcs11 engine: ", error));
    }
    ENGINE_free(shim);  // the engine list keeps its reference
    return absl::OkStatus();
  }();
  return registered;
}

}  // namespace

absl::StatusOr<PkeyPtr> LoadEnginePrivateKey(const Pkcs11Uri& uri) {
  absl::StatusOr<ENGINE*> engine = ConfiguredEngine(uri);
  if (!engine.ok()) return engine.status();
  const std::string key_uri = uri.KeyUri();
  PkeyPtr key(ENGINE_load_private_key(*engine, key_uri.c_str(), nullptr, nullptr), EVP_PKEY_free);
  if (key == nullptr) {
    return absl::NotFoundError(absl::StrCat("the pkcs11 engine cannot load private key ", key_uri,
                                            " from module ", uri.module_path, ": ",
                                            OpenSslError()));
  }
  return key;
}

}  // namespace internal

absl::StatusOr<std::string> GrpcEnginePrivateKey(const Pkcs11Uri& uri) {
  absl::StatusOr<internal::PkeyPtr> key = internal::LoadEnginePrivateKey(uri);
  if (!key.ok()) return key.status();
  if (absl::Status s = internal::RegisterShim(); !s.ok()) return s;
  return absl::StrCat("engine:", internal::kShimEngineId, ":", uri.KeyUri());
}

}  // namespace fedge::models
