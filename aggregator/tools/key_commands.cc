#include "key_commands.h"

#include <chrono>
#include <iostream>
#include <set>

#include "absl/strings/str_cat.h"
#include "fedge/models/certificates.h"
#include "fedge/models/model_trust.h"
#include "fedge/models/pkcs11.h"
#include "fedge/models/signing.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/status_macros.h"

namespace fedge::aggregator::tools {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::Status CheckFlags(const std::string& command, const std::map<std::string, std::string>& flags,
                        const std::set<std::string>& required, const std::set<std::string>& optional) {
  for (const auto& [name, value] : flags) {
    if (!required.contains(name) && !optional.contains(name)) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " for ", command));
    }
  }
  for (const std::string& name : required) {
    if (!flags.contains(name) || flags.at(name).empty()) {
      return absl::InvalidArgumentError(absl::StrCat(command, " needs --", name));
    }
  }
  return absl::OkStatus();
}

std::string Flag(const std::map<std::string, std::string>& flags, const std::string& name) {
  auto it = flags.find(name);
  return it == flags.end() ? std::string() : it->second;
}

absl::Status Keygen(const std::map<std::string, std::string>& flags) {
  FEDGE_RETURN_IF_ERROR(
      CheckFlags("keygen", flags, {"key", "type"}, {"public-out", "csr-cn", "csr-out"}));
  const std::string key_ref = Flag(flags, "key");
  const std::string type = Flag(flags, "type");
  FEDGE_RETURN_IF_ERROR(models::CheckKeyRef(key_ref));
  const bool token = models::IsPkcs11Uri(key_ref);
  if (type == "ed25519") {
    if (flags.contains("csr-cn") || flags.contains("csr-out")) {
      return absl::InvalidArgumentError("--csr-* is for TLS keys (--type ec-p256)");
    }
    std::optional<models::SigningKey> key;
    if (token) {
      FEDGE_ASSIGN_OR_RETURN(models::Pkcs11Uri uri, models::Pkcs11Uri::Parse(key_ref));
      FEDGE_ASSIGN_OR_RETURN(std::shared_ptr<models::Pkcs11Session> session,
                             models::Pkcs11Session::Open(uri));
      FEDGE_RETURN_IF_ERROR(session->GenerateKeyPair(uri, models::TokenKeyType::kEd25519));
      FEDGE_ASSIGN_OR_RETURN(key, models::SigningKey::FromPkcs11(key_ref));
    } else {
      if (std::error_code ec; std::filesystem::exists(key_ref, ec)) {
        return absl::AlreadyExistsError(absl::StrCat("'", key_ref, "' exists; not overwriting it"));
      }
      FEDGE_ASSIGN_OR_RETURN(key, models::SigningKey::Generate());
      FEDGE_RETURN_IF_ERROR(key->SavePem(key_ref));
    }
    if (const std::string out = Flag(flags, "public-out"); !out.empty()) {
      FEDGE_RETURN_IF_ERROR(key->public_key().SavePem(out));
    }
    std::cout << "generated Ed25519 signing key " << key->key_id() << (token ? " on the token" : "")
              << "\n";
    return absl::OkStatus();
  }
  if (type != "ec-p256") {
    return absl::InvalidArgumentError(
        absl::StrCat("--type '", type, "': expected ed25519 (model signing) or ec-p256 (TLS, CA)"));
  }
  if (flags.contains("public-out")) {
    return absl::InvalidArgumentError("--public-out is for signing keys (--type ed25519)");
  }
  if (flags.contains("csr-cn") != flags.contains("csr-out")) {
    return absl::InvalidArgumentError("--csr-cn and --csr-out go together");
  }
  FEDGE_ASSIGN_OR_RETURN(models::TlsPrivateKey key,
                         token ? models::TlsPrivateKey::GenerateInToken(key_ref)
                               : models::TlsPrivateKey::GenerateFile(key_ref));
  if (flags.contains("csr-out")) {
    FEDGE_ASSIGN_OR_RETURN(std::string csr,
                           models::MakeCertificateRequest(key, Flag(flags, "csr-cn")));
    FEDGE_RETURN_IF_ERROR(proto::WriteFileAtomic(Flag(flags, "csr-out"), csr, 0644));
  }
  std::cout << "generated EC P-256 key" << (token ? " on the token" : "") << "\n";
  return absl::OkStatus();
}

absl::Status EndorseKey(const std::map<std::string, std::string>& flags) {
  FEDGE_RETURN_IF_ERROR(CheckFlags("endorse-key", flags, {"key", "new-key", "chain"}, {}));
  FEDGE_ASSIGN_OR_RETURN(models::SigningKey current, models::SigningKey::Load(Flag(flags, "key")));
  // The new key as a private key (file or token) or as a public key PEM.
  const std::string next_ref = Flag(flags, "new-key");
  absl::StatusOr<models::SigningKey> next_private = models::SigningKey::Load(next_ref);
  absl::StatusOr<models::VerifyingKey> next =
      next_private.ok() ? next_private->public_key() : models::VerifyingKey::LoadPem(next_ref);
  if (!next.ok()) {
    return absl::Status(next.status().code(),
                        absl::StrCat("--new-key: ", next_private.status().message()));
  }
  FEDGE_RETURN_IF_ERROR(models::AppendToKeyChain(Flag(flags, "chain"), current, *next, NowMs()));
  std::cout << "key " << current.key_id() << " endorsed " << next->key_id() << " in "
            << Flag(flags, "chain") << "\n";
  return absl::OkStatus();
}

}  // namespace

const char kKeyCommandsHelp[] =
    "  fedge-aggregator keygen   --key REF --type ed25519|ec-p256 [--public-out FILE]\n"
    "                            [--csr-cn NAME --csr-out FILE]\n"
    "  fedge-aggregator endorse-key --key CURRENT --new-key NEXT --chain FILE\n";

bool IsKeyCommand(const std::string& command) {
  return command == "keygen" || command == "endorse-key";
}

absl::Status RunKeyCommand(const std::string& command,
                           const std::map<std::string, std::string>& flags) {
  if (command == "keygen") return Keygen(flags);
  return EndorseKey(flags);
}

}  // namespace fedge::aggregator::tools
