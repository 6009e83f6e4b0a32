// StateStore: what an aggregator keeps durable, as an interface (the round
// coordinator journals through it; see round_coordinator.h). Two
// implementations:
//
//   SqliteStateStore   (sqlite_state_store.h, fedge::aggregator_server): one
//                      directory with a SQLite database and signed artifact
//                      files; what deployments use.
//   InMemoryStateStore (in_memory_state_store.h, fedge::aggregator): the same
//                      contract in memory; what simulations and tests use, and
//                      what a "restart" over the same object resumes from.
//
// The contract every implementation keeps: each change is atomic (a crash, or
// an error, leaves either the old state or the new one); a round's accepted
// updates are journaled in folding order as they are accepted; a checkpoint
// of the partial aggregate replaces the journal entries it covers; closing or
// failing a round drops its journal and checkpoint. After a restart the open
// round is rebuilt from its latest checkpoint plus the journal entries after
// it (see RoundManager::ResumeRound), so no accepted update is lost and none
// is counted twice.
//
// Thread safety: every implementation's methods may be called concurrently.
#ifndef FEDGE_AGGREGATOR_STATE_STORE_H_
#define FEDGE_AGGREGATOR_STATE_STORE_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/v1/drift.pb.h"
#include "fedge/v1/federation.pb.h"
#include "fedge/v1/model.pb.h"

namespace fedge::aggregator {

struct ClientRecord {
  std::string id;
  std::string token_sha256;  // 32 bytes, or empty: the device authenticates by certificate
  bool revoked = false;
  int64_t enrolled_at_ms = 0;
};

struct VersionRecord {
  uint64_t version = 0;
  uint64_t parent = 0;
  int64_t created_at_ms = 0;
  uint64_t round = 0;  // the round that produced it (0 for the first version)
  std::string note;    // e.g. "rollback to 3"
  uint64_t master_bytes = 0;
  uint64_t artifact_bytes = 0;
  std::map<std::string, double> metrics;
  // Where the version stands in a gated rollout (see RolloutPolicy in
  // server.h): "live" (served to every device; the default), "canary"
  // (served to the canary devices only, awaiting their reports),
  // "rejected" (failed validation; never served) or "rolled_back" (its
  // canary regressed, or an operator withdrew it). `status_reason` says why.
  std::string status = "live";
  std::string status_reason;
};

enum class RoundState { kOpen, kClosed, kFailed };

struct RoundRecord {
  uint64_t round = 0;
  uint64_t model_version = 0;
  RoundState state = RoundState::kOpen;
  std::vector<std::string> cohort;
  v1::TrainConfig train;
  int64_t opened_at_ms = 0;
  int64_t deadline_at_ms = 0;
  int participants = 0;      // closed rounds
  uint64_t new_version = 0;  // closed rounds
  std::string reason;        // failed rounds
};

// What a restarted aggregator needs to continue an open round.
struct OpenRoundState {
  RoundRecord record;
  std::optional<v1::RoundCheckpoint> checkpoint;
  // Encoded updates accepted after the checkpoint, in folding order.
  std::vector<v1::EncodedUpdate> journal;
};

// A fresh enrollment token: 24 random bytes (OpenSSL RAND_bytes) in hex.
// UNAVAILABLE when the generator fails (a token of unrandom bytes would be
// guessable). Defined in fedge::aggregator_server (sqlite_state_store.cc).
absl::StatusOr<std::string> GenerateEnrollmentToken();

// The client ids a store accepts: 1 to 128 characters of [A-Za-z0-9._-].
bool ValidClientId(const std::string& id);
// The statuses of VersionRecord::status.
bool ValidVersionStatus(const std::string& status);

class StateStore {
 public:
  // Opens (creating when missing) the SQLite state directory `dir`: a
  // SqliteStateStore (sqlite_state_store.h). Kept here so deployments and
  // tools written against the concrete store of earlier releases still
  // compile; it is defined in fedge::aggregator_server, so calling it needs
  // that library. INTERNAL / DATA_LOSS name the file and SQLite's message;
  // FAILED_PRECONDITION when another process holds the directory.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::filesystem::path& dir);

  virtual ~StateStore() = default;
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  // Where the state lives on disk; empty for a store without files.
  virtual std::filesystem::path dir() const = 0;

  // --- devices -----------------------------------------------------------
  // Enrolls `id` (or re-enrolls it, clearing a revocation). With a token,
  // only its SHA-256 is stored. INVALID_ARGUMENT for an id ValidClientId
  // refuses.
  virtual absl::Status EnrollClient(const std::string& id, const std::string& token) = 0;
  // NOT_FOUND for an unknown id.
  virtual absl::Status RevokeClient(const std::string& id) = 0;
  virtual absl::StatusOr<ClientRecord> GetClient(const std::string& id) const = 0;
  virtual absl::StatusOr<std::vector<ClientRecord>> Clients() const = 0;

  // --- model versions ----------------------------------------------------
  // Stores a version; `master` and `artifact` must be signed already. Used
  // for the first version and for rollbacks; rounds publish through
  // CloseRound.
  virtual absl::Status AddVersion(const VersionRecord& record, const v1::ModelArtifact& master,
                                  const v1::ModelArtifact& artifact) = 0;
  virtual absl::StatusOr<std::vector<VersionRecord>> Versions() const = 0;
  // NOT_FOUND when there is no version yet.
  virtual absl::StatusOr<VersionRecord> LatestVersion() const = 0;
  // The newest version whose status is "live" (what devices are served);
  // NOT_FOUND when there is none.
  virtual absl::StatusOr<VersionRecord> LatestLiveVersion() const = 0;
  // Sets a version's rollout status and its reason. NOT_FOUND for an
  // unknown version; INVALID_ARGUMENT for a status other than those of
  // VersionRecord::status.
  virtual absl::Status SetVersionStatus(uint64_t version, const std::string& status,
                                        const std::string& reason) = 0;
  // A version's stored artifacts; an error naming the version when it is
  // unknown, DATA_LOSS when one does not parse.
  virtual absl::StatusOr<v1::ModelArtifact> ReadMaster(uint64_t version) const = 0;
  virtual absl::StatusOr<v1::ModelArtifact> ReadArtifact(uint64_t version) const = 0;

  // --- rounds ------------------------------------------------------------
  // Records that `record.round` opened. ALREADY_EXISTS for a known round id.
  virtual absl::Status BeginRound(const RoundRecord& record) = 0;
  // Journals an accepted update (call in folding order: see
  // RoundManagerOptions::on_accept).
  virtual absl::Status JournalUpdate(uint64_t round, uint64_t sequence,
                                     const v1::EncodedUpdate& update) = 0;
  // Stores a checkpoint of the open round; journal entries it covers
  // (sequence <= checkpoint.accepted()) are dropped in the same step.
  virtual absl::Status WriteCheckpoint(const v1::RoundCheckpoint& checkpoint) = 0;
  // Closes the round with a new version: its artifacts, the round's record,
  // the strategy's optimizer state (setting "strategy_state"), in one step;
  // the round's journal and checkpoint are dropped. FAILED_PRECONDITION when
  // the round is not open.
  virtual absl::Status CloseRound(uint64_t round, int participants, const VersionRecord& version,
                                  const v1::ModelArtifact& master,
                                  const v1::ModelArtifact& artifact,
                                  const std::string& strategy_state) = 0;
  // Marks the round failed (no version) with a reason. FAILED_PRECONDITION
  // when the round is not open.
  virtual absl::Status FailRound(uint64_t round, const std::string& reason) = 0;
  // The open round, if any.
  virtual absl::StatusOr<std::optional<OpenRoundState>> LoadOpenRound() const = 0;
  virtual absl::StatusOr<std::vector<RoundRecord>> Rounds() const = 0;
  // The largest round id ever opened (0 when none).
  virtual absl::StatusOr<uint64_t> LastRoundId() const = 0;
  // Clients whose update round `round` accepted, in order.
  virtual absl::StatusOr<std::vector<std::string>> AcceptedClients(uint64_t round) const = 0;

  // --- drift -------------------------------------------------------------
  // Records every event of a device's drift report (one step).
  virtual absl::Status RecordDrift(const v1::DriftReport& report) = 0;
  // Every recorded event, oldest first, one report per event.
  virtual absl::StatusOr<std::vector<v1::DriftReport>> DriftReports() const = 0;

  // --- settings ----------------------------------------------------------
  virtual absl::Status PutSetting(const std::string& key, const std::string& value) = 0;
  // Empty when unset.
  virtual absl::StatusOr<std::string> GetSetting(const std::string& key) const = 0;

 protected:
  StateStore() = default;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_STATE_STORE_H_
