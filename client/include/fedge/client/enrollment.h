// Device enrollment with a certificate (docs/security.md, "Enrollment"):
// the device makes its own EC P-256 key pair (in its PKCS#11 token when its
// key is a "pkcs11:" URI, so the private key never exists outside it),
// sends a PKCS#10 request for its id with its enrollment token, and stores
// the certificate the aggregator's device CA returns. From then on it
// authenticates with mutual TLS; the token is no longer needed.
//
//   ClientTransportOptions options = ...;  // target, client_id, token, ca_file,
//                                          // cert_file, key_file
//   absl::StatusOr<Enrollment> e = EnrollDevice(options);
//
// Thread safety: EnrollDevice may be called from any thread; two calls for
// the same files race (the second finds the key and reuses it).
#ifndef FEDGE_CLIENT_ENROLLMENT_H_
#define FEDGE_CLIENT_ENROLLMENT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "fedge/client/transport_registry.h"

namespace fedge::client {

struct Enrollment {
  std::string certificate_pem;  // as stored at cert_file
  bool key_generated = false;   // false: an existing key was reused
};

// Enrolls `options.client_id` with `options.token` over TLS to `ca_file`
// (enrollment is never plaintext). Uses the key at key_file when it exists
// (a retry after a failed call), else generates it. Writes cert_file
// (atomically) only after checking the certificate names the device and
// holds its key. Errors: INVALID_ARGUMENT for missing options; the
// aggregator's refusal with its gRPC code (UNAUTHENTICATED for a wrong
// token, INVALID_ARGUMENT for a CSR it refuses, FAILED_PRECONDITION when it
// is no device CA).
absl::StatusOr<Enrollment> EnrollDevice(const ClientTransportOptions& options);

// EnrollDevice unless cert_file exists already.
absl::Status EnsureEnrolled(const ClientTransportOptions& options);

}  // namespace fedge::client

#endif  // FEDGE_CLIENT_ENROLLMENT_H_
