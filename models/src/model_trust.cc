#include "fedge/models/model_trust.h"

#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/status_macros.h"

namespace fedge::models {
namespace {

constexpr std::string_view kEndorsementDomain = "fedge/key-endorsement/v1";
constexpr std::string_view kRollbackDomain = "fedge/rollback/v1";

std::string EndorsementMessage(v1::KeyEndorsement endorsement) {
  endorsement.clear_signature();
  return DomainSigningMessage(kEndorsementDomain, endorsement);
}

std::string RollbackMessage(v1::RollbackRecord record) {
  record.clear_signature();
  return DomainSigningMessage(kRollbackDomain, record);
}

const VerifyingKey* FindKey(const std::vector<VerifyingKey>& keys, const std::string& id) {
  for (const VerifyingKey& key : keys) {
    if (key.key_id() == id) return &key;
  }
  return nullptr;
}

}  // namespace

absl::StatusOr<v1::KeyEndorsement> EndorseKey(const SigningKey& current, const VerifyingKey& next,
                                              int64_t now_unix_ms) {
  v1::KeyEndorsement endorsement;
  endorsement.set_public_key(next.raw());
  endorsement.set_key_id(next.key_id());
  endorsement.set_endorsed_by(current.key_id());
  endorsement.set_issued_at_unix_ms(now_unix_ms);
  FEDGE_ASSIGN_OR_RETURN(std::string signature, current.Sign(EndorsementMessage(endorsement)));
  endorsement.set_signature(std::move(signature));
  return endorsement;
}

absl::StatusOr<v1::RollbackRecord> SignRollback(const SigningKey& key, uint64_t version,
                                                uint64_t supersedes, int64_t now_unix_ms) {
  if (version >= supersedes) {
    return absl::InvalidArgumentError(absl::StrCat("a rollback goes back: version ", version,
                                                   " is not older than ", supersedes));
  }
  v1::RollbackRecord record;
  record.set_version(version);
  record.set_supersedes(supersedes);
  record.set_issued_at_unix_ms(now_unix_ms);
  record.set_signing_key_id(key.key_id());
  FEDGE_ASSIGN_OR_RETURN(std::string signature, key.Sign(RollbackMessage(record)));
  record.set_signature(std::move(signature));
  return record;
}

absl::StatusOr<std::vector<VerifyingKey>> FollowKeyChain(
    const VerifyingKey& root, std::span<const v1::KeyEndorsement> chain) {
  std::vector<VerifyingKey> keys = {root};
  for (size_t i = 0; i < chain.size(); ++i) {
    const v1::KeyEndorsement& link = chain[i];
    const VerifyingKey& signer = keys.back();
    if (link.endorsed_by() != signer.key_id()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "key chain link ", i, " is endorsed by key '", absl::CHexEscape(link.endorsed_by()),
          "', which does not chain to the pinned key (expected '", signer.key_id(), "')"));
    }
    if (absl::Status s = signer.Verify(EndorsementMessage(link), link.signature()); !s.ok()) {
      return absl::UnauthenticatedError(
          absl::StrCat("key chain link ", i, ": ", s.message()));
    }
    absl::StatusOr<VerifyingKey> next = VerifyingKey::FromRaw(link.public_key());
    if (!next.ok() || next->key_id() != link.key_id()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "key chain link ", i, " endorses a malformed key or one whose id is not '",
          absl::CHexEscape(link.key_id()), "'"));
    }
    keys.push_back(*std::move(next));
  }
  return keys;
}

absl::StatusOr<v1::KeyChain> LoadKeyChain(const std::filesystem::path& path) {
  v1::KeyChain chain;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return chain;
  FEDGE_ASSIGN_OR_RETURN(std::string bytes, proto::ReadFile(path));
  if (!chain.ParseFromString(bytes)) {
    return absl::DataLossError(
        absl::StrCat("key chain file '", path.string(), "' does not parse"));
  }
  return chain;
}

absl::Status AppendToKeyChain(const std::filesystem::path& path, const SigningKey& current,
                              const VerifyingKey& next, int64_t now_unix_ms) {
  FEDGE_ASSIGN_OR_RETURN(v1::KeyChain chain, LoadKeyChain(path));
  if (chain.endorsements_size() > 0) {
    const std::string& tip = chain.endorsements().rbegin()->key_id();
    if (tip != current.key_id()) {
      return absl::FailedPreconditionError(
          absl::StrCat("key chain '", path.string(), "' ends at key '", tip,
                       "'; only that key may endorse the next, not '", current.key_id(), "'"));
    }
  }
  if (next.key_id() == current.key_id()) {
    return absl::InvalidArgumentError("a key cannot endorse itself");
  }
  if (chain.endorsements_size() == 0) chain.set_root_public_key(current.public_key().raw());
  FEDGE_ASSIGN_OR_RETURN(v1::KeyEndorsement link, EndorseKey(current, next, now_unix_ms));
  *chain.add_endorsements() = std::move(link);
  return proto::WriteFileAtomic(path, chain.SerializeAsString(), 0644);
}

// --- ModelTrust ------------------------------------------------------------------

ModelTrust::ModelTrust(VerifyingKey root) : root_(root), trusted_{std::move(root)} {}

absl::Status ModelTrust::AdoptChain(std::span<const v1::KeyEndorsement> chain,
                                    const std::string& signer_id) {
  FEDGE_ASSIGN_OR_RETURN(std::vector<VerifyingKey> keys, FollowKeyChain(root_, chain));
  if (keys.back().key_id() != signer_id) {
    return absl::UnauthenticatedError(absl::StrCat(
        "the aggregator signs models with key '", absl::CHexEscape(signer_id),
        "', this device pins key '", root_.key_id(), "' and the aggregator's key chain leads to '",
        keys.back().key_id(), "'"));
  }
  trusted_ = std::move(keys);
  return absl::OkStatus();
}

absl::Status ModelTrust::Accept(const v1::ModelArtifact& artifact,
                                const v1::RollbackRecord* rollback) {
  FEDGE_RETURN_IF_ERROR(VerifySignedArtifact(artifact, trusted_));
  const uint64_t version = artifact.header().version();
  if (running_.has_value() && version < *running_) {
    std::string why = "no rollback record was issued for it";
    if (rollback != nullptr && rollback->version() == version) {
      const VerifyingKey* key = FindKey(trusted_, rollback->signing_key_id());
      if (key == nullptr) {
        why = "its rollback record is signed by an untrusted key";
      } else if (!key->Verify(RollbackMessage(*rollback), rollback->signature()).ok()) {
        why = "its rollback record's signature does not verify";
      } else if (rollback->supersedes() < *running_) {
        why = absl::StrCat("its rollback record covers versions up to ", rollback->supersedes());
      } else {
        why.clear();
      }
    }
    if (!why.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("model version ", version,
                                                        " is older than version ", *running_,
                                                        " this device runs, and ", why));
    }
  }
  running_ = version;
  return absl::OkStatus();
}

}  // namespace fedge::models
