// StateStore: an aggregator's durable state, in one directory.
//
//   <dir>/state.db              SQLite (WAL, synchronous=FULL): devices, rounds,
//                               model versions, accepted updates, drift events,
//                               settings
//   <dir>/versions/v<N>.fp32    fp32 master of version N (a signed ModelArtifact)
//   <dir>/versions/v<N>.int8    what devices download (a signed ModelArtifact)
//   <dir>/rounds/r<N>.ckpt      the latest checkpoint of open round N
//
// Every file is written atomically (temp file, fsync, rename, fsync of the
// directory) before the row that names it is committed, and every change of
// state is one SQLite transaction, so a crash at any point leaves either the
// old state or the new one. A round's accepted updates are journaled (the
// encoded update, in folding order) as they are accepted; a checkpoint of
// the partial aggregate replaces the journal entries it covers. After a
// crash the open round is rebuilt from its latest checkpoint plus the
// journal entries after it (see RoundManager::ResumeRound).
//
// Thread safety: all methods may be called concurrently (one connection,
// serialized by a mutex). Only one process may use a directory at a time:
// Open takes an exclusive lock on it (FAILED_PRECONDITION if another process
// holds it).
#ifndef FEDGE_AGGREGATOR_STATE_STORE_H_
#define FEDGE_AGGREGATOR_STATE_STORE_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "fedge/v1/drift.pb.h"
#include "fedge/v1/federation.pb.h"
#include "fedge/v1/model.pb.h"

struct sqlite3;

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
std::string GenerateEnrollmentToken();

class StateStore {
 public:
  // Opens (creating when missing) the state directory. INTERNAL / DATA_LOSS
  // name the file and SQLite's message.
  static absl::StatusOr<std::unique_ptr<StateStore>> Open(const std::filesystem::path& dir);
  ~StateStore();
  StateStore(const StateStore&) = delete;
  StateStore& operator=(const StateStore&) = delete;

  const std::filesystem::path& dir() const { return dir_; }

  // --- devices -----------------------------------------------------------
  // Enrolls `id` (or re-enrolls it, clearing a revocation). With a token,
  // only its SHA-256 is stored. INVALID_ARGUMENT for an empty or overlong
  // id or one with characters other than [A-Za-z0-9._-].
  absl::Status EnrollClient(const std::string& id, const std::string& token);
  // NOT_FOUND for an unknown id.
  absl::Status RevokeClient(const std::string& id);
  absl::StatusOr<ClientRecord> GetClient(const std::string& id) const;
  absl::StatusOr<std::vector<ClientRecord>> Clients() const;

  // --- model versions ----------------------------------------------------
  // Writes version files and commits the row; `master` and `artifact` must
  // be signed already. Used for the first version and for rollbacks; rounds
  // publish through CloseRound.
  absl::Status AddVersion(const VersionRecord& record, const v1::ModelArtifact& master,
                          const v1::ModelArtifact& artifact);
  absl::StatusOr<std::vector<VersionRecord>> Versions() const;
  // NOT_FOUND when there is no version yet.
  absl::StatusOr<VersionRecord> LatestVersion() const;
  // The newest version whose status is "live" (what devices are served);
  // NOT_FOUND when there is none.
  absl::StatusOr<VersionRecord> LatestLiveVersion() const;
  // Sets a version's rollout status and its reason. NOT_FOUND for an
  // unknown version; INVALID_ARGUMENT for a status other than those of
  // VersionRecord::status.
  absl::Status SetVersionStatus(uint64_t version, const std::string& status,
                                const std::string& reason);
  // Reads a version's files back; DATA_LOSS when one does not parse.
  absl::StatusOr<v1::ModelArtifact> ReadMaster(uint64_t version) const;
  absl::StatusOr<v1::ModelArtifact> ReadArtifact(uint64_t version) const;

  // --- rounds ------------------------------------------------------------
  // Records that `record.round` opened. ALREADY_EXISTS for a known round id.
  absl::Status BeginRound(const RoundRecord& record);
  // Journals an accepted update (call in folding order: see
  // RoundManagerOptions::on_accept).
  absl::Status JournalUpdate(uint64_t round, uint64_t sequence, const v1::EncodedUpdate& update);
  // Stores a checkpoint of the open round; journal entries it covers
  // (sequence <= checkpoint.accepted()) are dropped in the same transaction.
  absl::Status WriteCheckpoint(const v1::RoundCheckpoint& checkpoint);
  // Closes the round with a new version: its files, the round's row, the
  // strategy's optimizer state, in one step; the round's journal and
  // checkpoint are dropped.
  absl::Status CloseRound(uint64_t round, int participants, const VersionRecord& version,
                          const v1::ModelArtifact& master, const v1::ModelArtifact& artifact,
                          const std::string& strategy_state);
  // Marks the round failed (no version) with a reason.
  absl::Status FailRound(uint64_t round, const std::string& reason);
  // The open round, if any.
  absl::StatusOr<std::optional<OpenRoundState>> LoadOpenRound() const;
  absl::StatusOr<std::vector<RoundRecord>> Rounds() const;
  // The largest round id ever opened (0 when none).
  absl::StatusOr<uint64_t> LastRoundId() const;
  // Clients whose update round `round` accepted, in order.
  absl::StatusOr<std::vector<std::string>> AcceptedClients(uint64_t round) const;

  // --- drift -------------------------------------------------------------
  // Records every event of a device's drift report (one transaction).
  absl::Status RecordDrift(const v1::DriftReport& report);
  // Every recorded event, oldest first, one report per event.
  absl::StatusOr<std::vector<v1::DriftReport>> DriftReports() const;

  // --- settings ----------------------------------------------------------
  absl::Status PutSetting(const std::string& key, const std::string& value);
  // Empty when unset.
  absl::StatusOr<std::string> GetSetting(const std::string& key) const;

 private:
  StateStore(std::filesystem::path dir, sqlite3* db, int lock_fd);
  std::filesystem::path VersionFile(uint64_t version, const char* kind) const;
  std::filesystem::path CheckpointFile(uint64_t round) const;
  absl::Status WriteVersionFiles(uint64_t version, const v1::ModelArtifact& master,
                                 const v1::ModelArtifact& artifact);
  absl::Status InsertVersionLocked(const VersionRecord& record);
  absl::Status DropJournalLocked(uint64_t round);

  const std::filesystem::path dir_;
  mutable std::mutex mu_;
  sqlite3* db_;
  int lock_fd_;
};

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_STATE_STORE_H_
