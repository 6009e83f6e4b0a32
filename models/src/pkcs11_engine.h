// Private to fedge::models_core: token keys as OpenSSL EVP_PKEYs, through
// libp11's "pkcs11" ENGINE (see fedge/models/pkcs11.h for why the engine).
#ifndef FEDGE_MODELS_SRC_PKCS11_ENGINE_H_
#define FEDGE_MODELS_SRC_PKCS11_ENGINE_H_

#include "absl/status/statusor.h"
#include "fedge/models/pkcs11.h"
#include "openssl_internal.h"

namespace fedge::models::internal {

// The private key `uri` names, usable for signing (EC keys); the key stays
// on the token, OpenSSL calls into it for every signature.
absl::StatusOr<PkeyPtr> LoadEnginePrivateKey(const Pkcs11Uri& uri);

}  // namespace fedge::models::internal

#endif  // FEDGE_MODELS_SRC_PKCS11_ENGINE_H_
