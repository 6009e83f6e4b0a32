#include "fedge/aggregator/in_memory_state_store.h"

#include <openssl/sha.h>

#include <chrono>

#include "absl/strings/str_cat.h"

namespace fedge::aggregator {
namespace {

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::Status NotOpen(uint64_t round) {
  return absl::FailedPreconditionError(absl::StrCat("round ", round, " is not open"));
}

}  // namespace

// --- devices ---------------------------------------------------------------

absl::Status InMemoryStateStore::EnrollClient(const std::string& id, const std::string& token) {
  if (!ValidClientId(id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client id '", id, "' is not valid: use 1 to 128 characters of [A-Za-z0-9._-]"));
  }
  ClientRecord record;
  record.id = id;
  record.enrolled_at_ms = NowMs();
  if (!token.empty()) {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
    record.token_sha256.assign(reinterpret_cast<const char*>(digest), sizeof(digest));
  }
  std::lock_guard<std::mutex> lock(mu_);
  clients_[id] = std::move(record);
  return absl::OkStatus();
}

absl::Status InMemoryStateStore::RevokeClient(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = clients_.find(id);
  if (it == clients_.end()) return absl::NotFoundError(absl::StrCat("unknown client '", id, "'"));
  it->second.revoked = true;
  return absl::OkStatus();
}

absl::StatusOr<ClientRecord> InMemoryStateStore::GetClient(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = clients_.find(id);
  if (it == clients_.end()) return absl::NotFoundError(absl::StrCat("unknown client '", id, "'"));
  return it->second;
}

absl::StatusOr<std::vector<ClientRecord>> InMemoryStateStore::Clients() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ClientRecord> clients;
  for (const auto& [id, record] : clients_) clients.push_back(record);
  return clients;
}

// --- model versions ----------------------------------------------------------

absl::Status InMemoryStateStore::AddVersion(const VersionRecord& record,
                                            const v1::ModelArtifact& master,
                                            const v1::ModelArtifact& artifact) {
  if (!ValidVersionStatus(record.status)) {
    return absl::InvalidArgumentError(absl::StrCat("version status '", record.status,
                                                   "' is not one of live, canary, "
                                                   "rejected, rolled_back"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (versions_.contains(record.version)) {
    return absl::AlreadyExistsError(
        absl::StrCat("model version ", record.version, " is stored already"));
  }
  versions_[record.version] = StoredVersion{record, master, artifact};
  DropOldModelsLocked();
  return absl::OkStatus();
}

void InMemoryStateStore::DropOldModelsLocked() {
  if (keep_models_ == 0 || versions_.size() <= keep_models_) return;
  uint64_t live = 0;
  for (auto it = versions_.rbegin(); it != versions_.rend(); ++it) {
    if (it->second.record.status == "live") {
      live = it->first;
      break;
    }
  }
  size_t newer = 0;
  for (auto it = versions_.rbegin(); it != versions_.rend(); ++it, ++newer) {
    if (newer < keep_models_ || it->first == live || !it->second.kept) continue;
    // Assigned, not Clear()ed: Clear keeps the bytes' capacity.
    it->second.master = v1::ModelArtifact();
    it->second.artifact = v1::ModelArtifact();
    it->second.kept = false;
  }
}

absl::StatusOr<const InMemoryStateStore::StoredVersion*> InMemoryStateStore::KeptLocked(
    uint64_t version) const {
  auto it = versions_.find(version);
  if (it == versions_.end()) return absl::NotFoundError(absl::StrCat("no model version ", version));
  if (!it->second.kept) {
    return absl::NotFoundError(absl::StrCat("the artifacts of model version ", version,
                                            " are no longer kept (this store keeps the newest ",
                                            keep_models_, ")"));
  }
  return &it->second;
}

absl::StatusOr<std::vector<VersionRecord>> InMemoryStateStore::Versions() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<VersionRecord> versions;
  for (const auto& [id, stored] : versions_) versions.push_back(stored.record);
  return versions;
}

absl::StatusOr<VersionRecord> InMemoryStateStore::LatestVersion() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (versions_.empty()) return absl::NotFoundError("no model version is stored");
  return versions_.rbegin()->second.record;
}

absl::StatusOr<VersionRecord> InMemoryStateStore::LatestLiveVersion() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = versions_.rbegin(); it != versions_.rend(); ++it) {
    if (it->second.record.status == "live") return it->second.record;
  }
  return absl::NotFoundError("no live model version is stored");
}

absl::Status InMemoryStateStore::SetVersionStatus(uint64_t version, const std::string& status,
                                                  const std::string& reason) {
  if (!ValidVersionStatus(status)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "version status '", status, "' is not one of live, canary, rejected, rolled_back"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = versions_.find(version);
  if (it == versions_.end()) return absl::NotFoundError(absl::StrCat("no model version ", version));
  it->second.record.status = status;
  it->second.record.status_reason = reason;
  return absl::OkStatus();
}

absl::StatusOr<v1::ModelArtifact> InMemoryStateStore::ReadMaster(uint64_t version) const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<const StoredVersion*> stored = KeptLocked(version);
  if (!stored.ok()) return stored.status();
  return (*stored)->master;
}

absl::StatusOr<v1::ModelArtifact> InMemoryStateStore::ReadArtifact(uint64_t version) const {
  std::lock_guard<std::mutex> lock(mu_);
  absl::StatusOr<const StoredVersion*> stored = KeptLocked(version);
  if (!stored.ok()) return stored.status();
  return (*stored)->artifact;
}

// --- rounds --------------------------------------------------------------------

absl::Status InMemoryStateStore::BeginRound(const RoundRecord& record) {
  std::lock_guard<std::mutex> lock(mu_);
  if (rounds_.contains(record.round)) {
    return absl::AlreadyExistsError(absl::StrCat("round ", record.round, " was opened before"));
  }
  RoundRecord stored = record;
  stored.state = RoundState::kOpen;
  stored.participants = 0;
  stored.new_version = 0;
  stored.reason.clear();
  rounds_[record.round] = std::move(stored);
  journals_[record.round] = Journal{};
  return absl::OkStatus();
}

absl::Status InMemoryStateStore::JournalUpdate(uint64_t round, uint64_t sequence,
                                               const v1::EncodedUpdate& update) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rounds_.find(round);
  if (it == rounds_.end() || it->second.state != RoundState::kOpen) return NotOpen(round);
  Journal& journal = journals_[round];
  if (sequence != journal.clients.size() + 1) {
    return absl::InvalidArgumentError(absl::StrCat("journal entry ", sequence, " of round ", round,
                                                   " is out of order (expected ",
                                                   journal.clients.size() + 1, ")"));
  }
  journal.clients.push_back(update.client_id());
  if (keep_journal_) {
    journal.entries[sequence] = update;
  } else {
    journal.incomplete = true;
  }
  return absl::OkStatus();
}

absl::Status InMemoryStateStore::WriteCheckpoint(const v1::RoundCheckpoint& checkpoint) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rounds_.find(checkpoint.round());
  if (it == rounds_.end() || it->second.state != RoundState::kOpen) {
    return NotOpen(checkpoint.round());
  }
  Journal& journal = journals_[checkpoint.round()];
  if (checkpoint.accepted() > journal.clients.size()) {
    return absl::InvalidArgumentError(absl::StrCat("a checkpoint of ", checkpoint.accepted(),
                                                   " updates for round ", checkpoint.round(),
                                                   ", which journaled ", journal.clients.size()));
  }
  journal.checkpoint = checkpoint;
  journal.entries.erase(journal.entries.begin(),
                        journal.entries.upper_bound(checkpoint.accepted()));
  return absl::OkStatus();
}

absl::Status InMemoryStateStore::EndRoundLocked(uint64_t round, RoundState state, int participants,
                                                uint64_t new_version, const std::string& reason) {
  auto it = rounds_.find(round);
  if (it == rounds_.end() || it->second.state != RoundState::kOpen) return NotOpen(round);
  it->second.state = state;
  it->second.participants = participants;
  it->second.new_version = new_version;
  it->second.reason = reason;
  Journal& journal = journals_[round];
  journal.entries.clear();
  journal.checkpoint.reset();
  return absl::OkStatus();
}

absl::Status InMemoryStateStore::CloseRound(uint64_t round, int participants,
                                            const VersionRecord& version,
                                            const v1::ModelArtifact& master,
                                            const v1::ModelArtifact& artifact,
                                            const std::string& strategy_state) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = rounds_.find(round);
  if (it == rounds_.end() || it->second.state != RoundState::kOpen) return NotOpen(round);
  if (versions_.contains(version.version)) {
    return absl::AlreadyExistsError(
        absl::StrCat("model version ", version.version, " is stored already"));
  }
  versions_[version.version] = StoredVersion{version, master, artifact};
  DropOldModelsLocked();
  settings_["strategy_state"] = strategy_state;
  return EndRoundLocked(round, RoundState::kClosed, participants, version.version, "");
}

absl::Status InMemoryStateStore::FailRound(uint64_t round, const std::string& reason) {
  std::lock_guard<std::mutex> lock(mu_);
  return EndRoundLocked(round, RoundState::kFailed, 0, 0, reason);
}

absl::StatusOr<std::optional<OpenRoundState>> InMemoryStateStore::LoadOpenRound() const {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = rounds_.rbegin(); it != rounds_.rend(); ++it) {
    if (it->second.state != RoundState::kOpen) continue;
    OpenRoundState open;
    open.record = it->second;
    auto journal = journals_.find(it->first);
    if (journal != journals_.end()) {
      if (journal->second.incomplete) {
        return absl::DataLossError(absl::StrCat(
            "round ", it->first, " is open, but its updates were not journaled (this store keeps "
            "no journal): it cannot be resumed"));
      }
      open.checkpoint = journal->second.checkpoint;
      for (const auto& [sequence, update] : journal->second.entries) {
        open.journal.push_back(update);
      }
    }
    return std::optional<OpenRoundState>(std::move(open));
  }
  return std::optional<OpenRoundState>();
}

absl::StatusOr<std::vector<RoundRecord>> InMemoryStateStore::Rounds() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<RoundRecord> rounds;
  for (const auto& [id, record] : rounds_) rounds.push_back(record);
  return rounds;
}

absl::StatusOr<uint64_t> InMemoryStateStore::LastRoundId() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rounds_.empty() ? 0 : rounds_.rbegin()->first;
}

absl::StatusOr<std::vector<std::string>> InMemoryStateStore::AcceptedClients(uint64_t round) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = journals_.find(round);
  if (it == journals_.end()) return std::vector<std::string>();
  return it->second.clients;
}

// --- drift and settings -----------------------------------------------------------

absl::Status InMemoryStateStore::RecordDrift(const v1::DriftReport& report) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const v1::DriftEvent& event : report.events()) {
    v1::DriftReport one;
    one.set_client_id(report.client_id());
    one.set_model_version(report.model_version());
    *one.add_events() = event;
    drift_.push_back(std::move(one));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::DriftReport>> InMemoryStateStore::DriftReports() const {
  std::lock_guard<std::mutex> lock(mu_);
  return drift_;
}

absl::Status InMemoryStateStore::PutSetting(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mu_);
  settings_[key] = value;
  return absl::OkStatus();
}

absl::StatusOr<std::string> InMemoryStateStore::GetSetting(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = settings_.find(key);
  return it == settings_.end() ? std::string() : it->second;
}

}  // namespace fedge::aggregator
