// Private to fedge::models_core: token keys as OpenSSL EVP_PKEYs, through
// libp11's "pkcs11" ENGINE (see fedge/models/pkcs11.h for why the engine).
#ifndef FEDGE_MODELS_SRC_PKCS11_ENGINE_H_
#define FEDGE_MODELS_SRC_PKCS11_ENGINE_H_

#include <openssl/evp.h>

#include <memory>

#include "absl/status/statusor.h"
#include "fedge/models/pkcs11.h"

namespace fedge::models::internal {

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;

// The private key `uri` names, usable for signing (EC keys); the key stays
// on the token, OpenSSL calls into it for every signature.
absl::StatusOr<PkeyPtr> LoadEnginePrivateKey(const Pkcs11Uri& uri);

// The oldest queued OpenSSL error, for messages; clears the queue.
std::string OpenSslError();

}  // namespace fedge::models::internal

#endif  // FEDGE_MODELS_SRC_PKCS11_ENGINE_H_
