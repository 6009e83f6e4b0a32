// Private to fedge::models_core: small OpenSSL helpers the signing,
// certificate and PKCS#11 engine code share.
#ifndef FEDGE_MODELS_SRC_OPENSSL_INTERNAL_H_
#define FEDGE_MODELS_SRC_OPENSSL_INTERNAL_H_

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

namespace fedge::models::internal {

using PkeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;

// The oldest queued OpenSSL error, for messages; clears the queue so a later
// call does not report a stale error.
inline std::string OpenSslError() {
  unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no OpenSSL error recorded";
  char buffer[256];
  ERR_error_string_n(code, buffer, sizeof(buffer));
  return buffer;
}

// A read-only memory BIO over `bytes` (which must outlive it).
inline BioPtr MemoryBio(std::string_view bytes) {
  return BioPtr(BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())), BIO_free);
}

inline std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long length = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(length));
}

}  // namespace fedge::models::internal

#endif  // FEDGE_MODELS_SRC_OPENSSL_INTERNAL_H_
