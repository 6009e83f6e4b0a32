// SqliteStateStore: the StateStore of deployments, in one directory.
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
// old state or the new one (the contract of state_store.h).
//
// Thread safety: all methods may be called concurrently (one connection,
// serialized by a mutex). Only one process may use a directory at a time:
// Open takes an exclusive lock on it (FAILED_PRECONDITION if another process
// holds it).
#ifndef FEDGE_AGGREGATOR_SQLITE_STATE_STORE_H_
#define FEDGE_AGGREGATOR_SQLITE_STATE_STORE_H_

#include <filesystem>
#include <memory>
#include <mutex>

#include "fedge/aggregator/state_store.h"

struct sqlite3;

namespace fedge::aggregator {

class SqliteStateStore final : public StateStore {
 public:
  // Opens (creating when missing) the state directory, migrating an older
  // schema. INTERNAL / DATA_LOSS name the file and SQLite's message.
  static absl::StatusOr<std::unique_ptr<SqliteStateStore>> Open(const std::filesystem::path& dir);
  ~SqliteStateStore() override;

  std::filesystem::path dir() const override { return dir_; }

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
  SqliteStateStore(std::filesystem::path dir, sqlite3* db, int lock_fd);
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

#endif  // FEDGE_AGGREGATOR_SQLITE_STATE_STORE_H_
