// InMemoryStateStore: the StateStore contract (state_store.h) in memory, for
// simulations and tests. Nothing reaches a disk: a "restart" is a new
// RoundCoordinator over the same store object, which then resumes the open
// round from its checkpoint and journal exactly as a restarted deployment
// resumes from its SQLite directory.
//
// Artifacts are kept as the messages given (copied), so ReadMaster returns
// what AddVersion or CloseRound stored, bit for bit.
//
// Thread safety: all methods may be called concurrently (one mutex).
#ifndef FEDGE_AGGREGATOR_IN_MEMORY_STATE_STORE_H_
#define FEDGE_AGGREGATOR_IN_MEMORY_STATE_STORE_H_

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "fedge/aggregator/state_store.h"

namespace fedge::aggregator {

class InMemoryStateStore final : public StateStore {
 public:
  // `keep_models` > 0 keeps the master and artifact of only the newest
  // `keep_models` versions and of the newest live one (a long simulation
  // would otherwise hold every version it published); older versions keep
  // their records, and reading their artifacts is NOT_FOUND. 0: keep all.
  //
  // `keep_journal` false keeps who was journaled but not the updates (a
  // simulation, which never restarts, would hold every update of an open
  // round): a coordinator started over such a store with a round open gets
  // DATA_LOSS from LoadOpenRound instead of resuming it wrong.
  explicit InMemoryStateStore(size_t keep_models = 0, bool keep_journal = true)
      : keep_models_(keep_models), keep_journal_(keep_journal) {}

  std::filesystem::path dir() const override { return {}; }

  absl::Status EnrollClient(const std::string& id, const std::string& token) override;
  absl::Status RevokeClient(const std::string& id) override;
  absl::StatusOr<ClientRecord> GetClient(const std::string& id) const override;
  absl::StatusOr<std::vector<ClientRecord>> Clients() const override;

  absl::Status AddVersion(const VersionRecord& record, const v1::ModelArtifact& master,
                          const v1::ModelArtifact& artifact) override;
  absl::StatusOr<std::vector<VersionRecord>> Versions() const override;
  absl::StatusOr<VersionRecord> LatestVersion() const override;
  absl::StatusOr<VersionRecord> LatestLiveVersion() const override;
  absl::Status SetVersionStatus(uint64_t version, const std::string& status,
                                const std::string& reason) override;
  absl::StatusOr<v1::ModelArtifact> ReadMaster(uint64_t version) const override;
  absl::StatusOr<v1::ModelArtifact> ReadArtifact(uint64_t version) const override;

  absl::Status BeginRound(const RoundRecord& record) override;
  absl::Status JournalUpdate(uint64_t round, uint64_t sequence,
                             const v1::EncodedUpdate& update) override;
  absl::Status WriteCheckpoint(const v1::RoundCheckpoint& checkpoint) override;
  absl::Status CloseRound(uint64_t round, int participants, const VersionRecord& version,
                          const v1::ModelArtifact& master, const v1::ModelArtifact& artifact,
                          const std::string& strategy_state) override;
  absl::Status FailRound(uint64_t round, const std::string& reason) override;
  absl::StatusOr<std::optional<OpenRoundState>> LoadOpenRound() const override;
  absl::StatusOr<std::vector<RoundRecord>> Rounds() const override;
  absl::StatusOr<uint64_t> LastRoundId() const override;
  absl::StatusOr<std::vector<std::string>> AcceptedClients(uint64_t round) const override;

  absl::Status RecordDrift(const v1::DriftReport& report) override;
  absl::StatusOr<std::vector<v1::DriftReport>> DriftReports() const override;

  absl::Status PutSetting(const std::string& key, const std::string& value) override;
  absl::StatusOr<std::string> GetSetting(const std::string& key) const override;

 private:
  struct StoredVersion {
    VersionRecord record;
    v1::ModelArtifact master;
    v1::ModelArtifact artifact;
    bool kept = true;  // false: its artifacts were dropped (keep_models)
  };
  // Drops the artifacts keep_models_ no longer covers; mu_ held.
  void DropOldModelsLocked();
  // The stored version's artifacts, or NOT_FOUND; mu_ held.
  absl::StatusOr<const StoredVersion*> KeptLocked(uint64_t version) const;
  struct Journal {
    std::vector<std::string> clients;               // every accepted client, in order
    std::map<uint64_t, v1::EncodedUpdate> entries;  // sequence -> update, not yet covered
    std::optional<v1::RoundCheckpoint> checkpoint;
    bool incomplete = false;  // updates journaled without their bytes
  };
  // Marks open round `round` closed or failed; mu_ held.
  absl::Status EndRoundLocked(uint64_t round, RoundState state, int participants,
                              uint64_t new_version, const std::string& reason);

  const size_t keep_models_;
  const bool keep_journal_;
  mutable std::mutex mu_;
  std::map<std::string, ClientRecord, std::less<>> clients_;
  std::map<uint64_t, StoredVersion> versions_;
  std::map<uint64_t, RoundRecord> rounds_;
  std::map<uint64_t, Journal> journals_;
  std::vector<v1::DriftReport> drift_;
  std::map<std::string, std::string, std::less<>> settings_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_IN_MEMORY_STATE_STORE_H_
