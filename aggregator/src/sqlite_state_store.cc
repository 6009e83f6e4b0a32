#include "fedge/aggregator/sqlite_state_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "fedge/proto/atomic_file.h"
#include "fedge/proto/status_macros.h"
#include "openssl/rand.h"
#include "openssl/sha.h"

namespace fedge::aggregator {
namespace {

constexpr int kSchemaVersion = 2;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS settings(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS clients(
  id TEXT PRIMARY KEY,
  token_sha256 BLOB,
  revoked INTEGER NOT NULL DEFAULT 0,
  enrolled_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS versions(
  version INTEGER PRIMARY KEY,
  parent INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  round INTEGER NOT NULL,
  note TEXT NOT NULL,
  master_bytes INTEGER NOT NULL,
  artifact_bytes INTEGER NOT NULL,
  metrics TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'live'
    CHECK(status IN ('live', 'canary', 'rejected', 'rolled_back')),
  status_reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS rounds(
  round INTEGER PRIMARY KEY,
  model_version INTEGER NOT NULL,
  state TEXT NOT NULL CHECK(state IN ('open', 'closed', 'failed')),
  cohort TEXT NOT NULL,
  train BLOB NOT NULL,
  opened_at INTEGER NOT NULL,
  deadline_at INTEGER NOT NULL,
  participants INTEGER NOT NULL DEFAULT 0,
  new_version INTEGER,
  reason TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS accepted_updates(
  round INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  client_id TEXT NOT NULL,
  accepted_at INTEGER NOT NULL,
  bytes INTEGER NOT NULL,
  payload BLOB,
  PRIMARY KEY(round, seq),
  UNIQUE(round, client_id));
CREATE TABLE IF NOT EXISTS drift_events(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  client_id TEXT NOT NULL,
  model_version INTEGER NOT NULL,
  received_at INTEGER NOT NULL,
  event BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints(
  round INTEGER PRIMARY KEY,
  accepted INTEGER NOT NULL);
)sql";

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One prepared statement; finalized on destruction.
class Statement {
 public:
  Statement(sqlite3* db, const char* sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status() const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("SQLite: ", sqlite3_errmsg(db_)));
  }
  Statement& Bind(int i, int64_t v) {
    sqlite3_bind_int64(stmt_, i, v);
    return *this;
  }
  Statement& Bind(int i, const std::string& v) {
    sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindBlob(int i, const std::string& v) {
    sqlite3_bind_blob(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Statement& BindNull(int i) {
    sqlite3_bind_null(stmt_, i);
    return *this;
  }
  // True when a row is available; false when done. Errors go to status().
  bool Step() {
    if (rc_ != SQLITE_OK && rc_ != SQLITE_ROW && rc_ != SQLITE_DONE) return false;
    rc_ = sqlite3_step(stmt_);
    return rc_ == SQLITE_ROW;
  }
  absl::Status Run() {
    while (Step()) {
    }
    if (rc_ == SQLITE_DONE) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("SQLite: ", sqlite3_errmsg(db_)));
  }
  absl::Status step_status() const {
    if (rc_ == SQLITE_DONE || rc_ == SQLITE_ROW || rc_ == SQLITE_OK) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("SQLite: ", sqlite3_errmsg(db_)));
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  bool IsNull(int col) const { return sqlite3_column_type(stmt_, col) == SQLITE_NULL; }
  std::string Text(int col) const {
    const void* data = sqlite3_column_blob(stmt_, col);
    const int n = sqlite3_column_bytes(stmt_, col);
    return data == nullptr ? std::string() : std::string(static_cast<const char*>(data), n);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    absl::Status status = absl::InternalError(absl::StrCat("SQLite: ", error ? error : "?"));
    sqlite3_free(error);
    return status;
  }
  return absl::OkStatus();
}

// BEGIN IMMEDIATE ... COMMIT, rolled back unless Commit() ran.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db), status_(Exec(db, "BEGIN IMMEDIATE")) {}
  ~Transaction() {
    if (status_.ok() && !done_) Exec(db_, "ROLLBACK").IgnoreError();
  }
  const absl::Status& status() const { return status_; }
  absl::Status Commit() {
    done_ = true;
    return Exec(db_, "COMMIT");
  }

 private:
  sqlite3* db_;
  absl::Status status_;
  bool done_ = false;
};

std::string MetricsText(const std::map<std::string, double>& metrics) {
  std::ostringstream out;
  out.precision(17);
  for (const auto& [key, value] : metrics) out << key << '=' << value << '\n';
  return out.str();
}

std::map<std::string, double> ParseMetrics(const std::string& text) {
  std::map<std::string, double> metrics;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    const size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    metrics[std::string(line.substr(0, eq))] =
        std::strtod(std::string(line.substr(eq + 1)).c_str(), nullptr);
  }
  return metrics;
}

RoundState ParseState(const std::string& name) {
  if (name == "closed") return RoundState::kClosed;
  if (name == "failed") return RoundState::kFailed;
  return RoundState::kOpen;
}

constexpr const char* kRoundColumns =
    "round, model_version, state, cohort, train, opened_at, deadline_at, participants, "
    "new_version, reason";

absl::StatusOr<RoundRecord> ReadRound(const Statement& row) {
  RoundRecord record;
  record.round = static_cast<uint64_t>(row.Int(0));
  record.model_version = static_cast<uint64_t>(row.Int(1));
  record.state = ParseState(row.Text(2));
  const std::string cohort = row.Text(3);
  for (absl::string_view id : absl::StrSplit(cohort, '\n', absl::SkipEmpty())) {
    record.cohort.emplace_back(id);
  }
  if (!record.train.ParseFromString(row.Text(4))) {
    return absl::DataLossError(
        absl::StrCat("the stored train config of round ", record.round, " does not parse"));
  }
  record.opened_at_ms = row.Int(5);
  record.deadline_at_ms = row.Int(6);
  record.participants = static_cast<int>(row.Int(7));
  record.new_version = row.IsNull(8) ? 0 : static_cast<uint64_t>(row.Int(8));
  record.reason = row.Text(9);
  return record;
}

absl::StatusOr<v1::ModelArtifact> ReadArtifactFile(const std::filesystem::path& path) {
  FEDGE_ASSIGN_OR_RETURN(std::string bytes, proto::ReadFile(path));
  v1::ModelArtifact artifact;
  if (!artifact.ParseFromString(bytes)) {
    return absl::DataLossError(absl::StrCat(path.string(), " is not a model artifact"));
  }
  return artifact;
}

}  // namespace

absl::StatusOr<std::string> GenerateEnrollmentToken() {
  unsigned char bytes[24];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return absl::UnavailableError(
        "OpenSSL's random generator failed (RAND_bytes): no enrollment token was made");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token;
  for (unsigned char b : bytes) {
    token.push_back(kHex[b >> 4]);
    token.push_back(kHex[b & 15]);
  }
  return token;
}

absl::StatusOr<std::unique_ptr<SqliteStateStore>> SqliteStateStore::Open(
    const std::filesystem::path& dir) {
  std::error_code ec;
  for (const char* sub : {"", "versions", "rounds"}) {
    std::filesystem::create_directories(dir / sub, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot create state directory ", (dir / sub).string(), ": ", ec.message()));
    }
  }
  const std::filesystem::path lock_path = dir / "LOCK";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", lock_path.string()));
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd);
    return absl::FailedPreconditionError(absl::StrCat("state directory ", dir.string(),
                                                      " is in use by another process (",
                                                      lock_path.string(), " is locked)"));
  }
  const std::filesystem::path db_path = dir / "state.db";
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_path.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    absl::Status status = absl::InternalError(
        absl::StrCat("cannot open ", db_path.string(), ": ", sqlite3_errmsg(db)));
    sqlite3_close(db);
    ::close(lock_fd);
    return status;
  }
  auto store = std::unique_ptr<SqliteStateStore>(new SqliteStateStore(dir, db, lock_fd));
  sqlite3_busy_timeout(db, 5000);
  for (const char* pragma :
       {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (absl::Status s = Exec(db, pragma); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(db_path.string(), ": ", s.message()));
    }
  }
  if (absl::Status s = Exec(db, kSchema); !s.ok()) {
    return absl::DataLossError(
        absl::StrCat(db_path.string(), " is not a fedge state database: ", s.message()));
  }
  FEDGE_ASSIGN_OR_RETURN(std::string schema, store->GetSetting("schema_version"));
  if (schema == "1") {
    // Version 1 had no rollout status: every stored version was live.
    Transaction txn(store->db_);
    FEDGE_RETURN_IF_ERROR(txn.status());
    FEDGE_RETURN_IF_ERROR(
        Exec(store->db_,
             "ALTER TABLE versions ADD COLUMN status TEXT NOT NULL DEFAULT 'live' "
             "CHECK(status IN ('live', 'canary', 'rejected', 'rolled_back'));"
             "ALTER TABLE versions ADD COLUMN status_reason TEXT NOT NULL DEFAULT '';"
             "UPDATE settings SET value = '2' WHERE key = 'schema_version';"));
    FEDGE_RETURN_IF_ERROR(txn.Commit());
  } else if (schema.empty()) {
    FEDGE_RETURN_IF_ERROR(store->PutSetting("schema_version", std::to_string(kSchemaVersion)));
  } else if (schema != std::to_string(kSchemaVersion)) {
    return absl::FailedPreconditionError(absl::StrCat(db_path.string(), " has schema version ",
                                                      schema, "; this fedge reads version ",
                                                      kSchemaVersion));
  }
  return store;
}

absl::StatusOr<std::unique_ptr<StateStore>> StateStore::Open(const std::filesystem::path& dir) {
  FEDGE_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStateStore> store, SqliteStateStore::Open(dir));
  return std::unique_ptr<StateStore>(std::move(store));
}

SqliteStateStore::SqliteStateStore(std::filesystem::path dir, sqlite3* db, int lock_fd)
    : dir_(std::move(dir)), db_(db), lock_fd_(lock_fd) {}

SqliteStateStore::~SqliteStateStore() {
  sqlite3_close(db_);
  ::close(lock_fd_);
}

std::filesystem::path SqliteStateStore::VersionFile(uint64_t version, const char* kind) const {
  return dir_ / "versions" / absl::StrCat("v", version, ".", kind);
}

std::filesystem::path SqliteStateStore::CheckpointFile(uint64_t round) const {
  return dir_ / "rounds" / absl::StrCat("r", round, ".ckpt");
}

// --- devices ---------------------------------------------------------------

absl::Status SqliteStateStore::EnrollClient(const std::string& id, const std::string& token) {
  if (!ValidClientId(id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "client id '", id, "' is not valid: use 1 to 128 characters of [A-Za-z0-9._-]"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  Statement insert(db_,
                   "INSERT INTO clients(id, token_sha256, revoked, enrolled_at) VALUES(?, ?, 0, ?) "
                   "ON CONFLICT(id) DO UPDATE SET token_sha256 = excluded.token_sha256, "
                   "revoked = 0, enrolled_at = excluded.enrolled_at");
  FEDGE_RETURN_IF_ERROR(insert.status());
  insert.Bind(1, id).Bind(3, NowMs());
  if (token.empty()) {
    insert.BindNull(2);
  } else {
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(token.data()), token.size(), digest);
    insert.BindBlob(2, std::string(reinterpret_cast<const char*>(digest), sizeof(digest)));
  }
  return insert.Run();
}

absl::Status SqliteStateStore::RevokeClient(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement update(db_, "UPDATE clients SET revoked = 1 WHERE id = ?");
  FEDGE_RETURN_IF_ERROR(update.status());
  update.Bind(1, id);
  FEDGE_RETURN_IF_ERROR(update.Run());
  if (sqlite3_changes(db_) == 0) {
    return absl::NotFoundError(absl::StrCat("no enrolled client '", id, "'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ClientRecord> SqliteStateStore::GetClient(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  Statement query(db_, "SELECT id, token_sha256, revoked, enrolled_at FROM clients WHERE id = ?");
  FEDGE_RETURN_IF_ERROR(query.status());
  query.Bind(1, id);
  if (!query.Step()) {
    FEDGE_RETURN_IF_ERROR(query.step_status());
    return absl::NotFoundError(absl::StrCat("client '", id, "' is not enrolled"));
  }
  return ClientRecord{query.Text(0), query.Text(1), query.Int(2) != 0, query.Int(3)};
}

absl::StatusOr<std::vector<ClientRecord>> SqliteStateStore::Clients() const {
  std::lock_guard<std::mutex> lock(mu_);
  Statement query(db_, "SELECT id, token_sha256, revoked, enrolled_at FROM clients ORDER BY id");
  FEDGE_RETURN_IF_ERROR(query.status());
  std::vector<ClientRecord> clients;
  while (query.Step()) {
    clients.push_back({query.Text(0), query.Text(1), query.Int(2) != 0, query.Int(3)});
  }
  FEDGE_RETURN_IF_ERROR(query.step_status());
  return clients;
}

// --- model versions ----------------------------------------------------------

absl::Status SqliteStateStore::WriteVersionFiles(uint64_t version, const v1::ModelArtifact& master,
                                                 const v1::ModelArtifact& artifact) {
  FEDGE_RETURN_IF_ERROR(
      proto::WriteFileAtomic(VersionFile(version, "fp32"), master.SerializeAsString()));
  return proto::WriteFileAtomic(VersionFile(version, "int8"), artifact.SerializeAsString());
}

absl::Status SqliteStateStore::InsertVersionLocked(const VersionRecord& record) {
  Statement insert(db_,
                   "INSERT OR REPLACE INTO versions(version, parent, created_at, round, note, "
                   "master_bytes, artifact_bytes, metrics, status, status_reason) "
                   "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  FEDGE_RETURN_IF_ERROR(insert.status());
  insert.Bind(1, static_cast<int64_t>(record.version))
      .Bind(2, static_cast<int64_t>(record.parent))
      .Bind(3, record.created_at_ms)
      .Bind(4, static_cast<int64_t>(record.round))
      .Bind(5, record.note)
      .Bind(6, static_cast<int64_t>(record.master_bytes))
      .Bind(7, static_cast<int64_t>(record.artifact_bytes))
      .Bind(8, MetricsText(record.metrics))
      .Bind(9, record.status)
      .Bind(10, record.status_reason);
  return insert.Run();
}

absl::Status SqliteStateStore::AddVersion(const VersionRecord& record,
                                          const v1::ModelArtifact& master,
                                          const v1::ModelArtifact& artifact) {
  FEDGE_RETURN_IF_ERROR(WriteVersionFiles(record.version, master, artifact));
  std::lock_guard<std::mutex> lock(mu_);
  Transaction txn(db_);
  FEDGE_RETURN_IF_ERROR(txn.status());
  FEDGE_RETURN_IF_ERROR(InsertVersionLocked(record));
  return txn.Commit();
}

absl::StatusOr<std::vector<VersionRecord>> SqliteStateStore::Versions() const {
  std::lock_guard<std::mutex> lock(mu_);
  Statement query(db_,
                  "SELECT version, parent, created_at, round, note, master_bytes, artifact_bytes, "
                  "metrics, status, status_reason FROM versions ORDER BY version");
  FEDGE_RETURN_IF_ERROR(query.status());
  std::vector<VersionRecord> versions;
  while (query.Step()) {
    VersionRecord record;
    record.version = static_cast<uint64_t>(query.Int(0));
    record.parent = static_cast<uint64_t>(query.Int(1));
    record.created_at_ms = query.Int(2);
    record.round = static_cast<uint64_t>(query.Int(3));
    record.note = query.Text(4);
    record.master_bytes = static_cast<uint64_t>(query.Int(5));
    record.artifact_bytes = static_cast<uint64_t>(query.Int(6));
    record.metrics = ParseMetrics(query.Text(7));
    record.status = query.Text(8);
    record.status_reason = query.Text(9);
    versions.push_back(std::move(record));
  }
  FEDGE_RETURN_IF_ERROR(query.step_status());
  return versions;
}

absl::StatusOr<VersionRecord> SqliteStateStore::LatestVersion() const {
  FEDGE_ASSIGN_OR_RETURN(std::vector<VersionRecord> versions, Versions());
  if (versions.empty()) return absl::NotFoundError("no model version has been published yet");
  return versions.back();
}

absl::StatusOr<VersionRecord> SqliteStateStore::LatestLiveVersion() const {
  FEDGE_ASSIGN_OR_RETURN(std::vector<VersionRecord> versions, Versions());
  for (auto it = versions.rbegin(); it != versions.rend(); ++it) {
    if (it->status == "live") return *it;
  }
  return absl::NotFoundError("no model version is live");
}

absl::Status SqliteStateStore::SetVersionStatus(uint64_t version, const std::string& status,
                                                const std::string& reason) {
  if (!ValidVersionStatus(status)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "version status '", status, "' is not one of live, canary, rejected, rolled_back"));
  }
  std::lock_guard<std::mutex> lock(mu_);
  Statement update(db_, "UPDATE versions SET status = ?, status_reason = ? WHERE version = ?");
  FEDGE_RETURN_IF_ERROR(update.status());
  update.Bind(1, status).Bind(2, reason).Bind(3, static_cast<int64_t>(version));
  FEDGE_RETURN_IF_ERROR(update.Run());
  if (sqlite3_changes(db_) == 0) {
    return absl::NotFoundError(absl::StrCat("no model version ", version));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ModelArtifact> SqliteStateStore::ReadMaster(uint64_t version) const {
  return ReadArtifactFile(VersionFile(version, "fp32"));
}

absl::StatusOr<v1::ModelArtifact> SqliteStateStore::ReadArtifact(uint64_t version) const {
  return ReadArtifactFile(VersionFile(version, "int8"));
}

// --- rounds ------------------------------------------------------------------

absl::Status SqliteStateStore::BeginRound(const RoundRecord& record) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement insert(db_,
                   "INSERT INTO rounds(round, model_version, state, cohort, train, opened_at, "
                   "deadline_at) VALUES(?, ?, 'open', ?, ?, ?, ?)");
  FEDGE_RETURN_IF_ERROR(insert.status());
  insert.Bind(1, static_cast<int64_t>(record.round))
      .Bind(2, static_cast<int64_t>(record.model_version))
      .Bind(3, absl::StrJoin(record.cohort, "\n"))
      .BindBlob(4, record.train.SerializeAsString())
      .Bind(5, record.opened_at_ms)
      .Bind(6, record.deadline_at_ms);
  if (absl::Status s = insert.Run(); !s.ok()) {
    if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_PRIMARYKEY) {
      return absl::AlreadyExistsError(absl::StrCat("round ", record.round, " was opened before"));
    }
    return s;
  }
  return absl::OkStatus();
}

absl::Status SqliteStateStore::JournalUpdate(uint64_t round, uint64_t sequence,
                                             const v1::EncodedUpdate& update) {
  const std::string payload = update.SerializeAsString();
  std::lock_guard<std::mutex> lock(mu_);
  Statement insert(db_,
                   "INSERT INTO accepted_updates(round, seq, client_id, accepted_at, bytes, "
                   "payload) VALUES(?, ?, ?, ?, ?, ?)");
  FEDGE_RETURN_IF_ERROR(insert.status());
  insert.Bind(1, static_cast<int64_t>(round))
      .Bind(2, static_cast<int64_t>(sequence))
      .Bind(3, update.client_id())
      .Bind(4, NowMs())
      .Bind(5, static_cast<int64_t>(payload.size()))
      .BindBlob(6, payload);
  return insert.Run();
}

absl::Status SqliteStateStore::WriteCheckpoint(const v1::RoundCheckpoint& checkpoint) {
  FEDGE_RETURN_IF_ERROR(
      proto::WriteFileAtomic(CheckpointFile(checkpoint.round()), checkpoint.SerializeAsString()));
  std::lock_guard<std::mutex> lock(mu_);
  Transaction txn(db_);
  FEDGE_RETURN_IF_ERROR(txn.status());
  Statement upsert(db_, "INSERT OR REPLACE INTO checkpoints(round, accepted) VALUES(?, ?)");
  FEDGE_RETURN_IF_ERROR(upsert.status());
  upsert.Bind(1, static_cast<int64_t>(checkpoint.round()))
      .Bind(2, static_cast<int64_t>(checkpoint.accepted()));
  FEDGE_RETURN_IF_ERROR(upsert.Run());
  Statement drop(db_, "UPDATE accepted_updates SET payload = NULL WHERE round = ? AND seq <= ?");
  FEDGE_RETURN_IF_ERROR(drop.status());
  drop.Bind(1, static_cast<int64_t>(checkpoint.round()))
      .Bind(2, static_cast<int64_t>(checkpoint.accepted()));
  FEDGE_RETURN_IF_ERROR(drop.Run());
  return txn.Commit();
}

absl::Status SqliteStateStore::DropJournalLocked(uint64_t round) {
  // The bookkeeping rows stay (who was accepted, when, how many bytes); the
  // payloads and the checkpoint go.
  for (const char* sql : {"UPDATE accepted_updates SET payload = NULL WHERE round = ?",
                          "DELETE FROM checkpoints WHERE round = ?"}) {
    Statement drop(db_, sql);
    FEDGE_RETURN_IF_ERROR(drop.status());
    drop.Bind(1, static_cast<int64_t>(round));
    FEDGE_RETURN_IF_ERROR(drop.Run());
  }
  return absl::OkStatus();
}

absl::Status SqliteStateStore::CloseRound(uint64_t round, int participants,
                                          const VersionRecord& version,
                                          const v1::ModelArtifact& master,
                                          const v1::ModelArtifact& artifact,
                                          const std::string& strategy_state) {
  FEDGE_RETURN_IF_ERROR(WriteVersionFiles(version.version, master, artifact));
  {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction txn(db_);
    FEDGE_RETURN_IF_ERROR(txn.status());
    FEDGE_RETURN_IF_ERROR(InsertVersionLocked(version));
    Statement update(db_,
                     "UPDATE rounds SET state = 'closed', participants = ?, new_version = ? "
                     "WHERE round = ? AND state = 'open'");
    FEDGE_RETURN_IF_ERROR(update.status());
    update.Bind(1, participants)
        .Bind(2, static_cast<int64_t>(version.version))
        .Bind(3, static_cast<int64_t>(round));
    FEDGE_RETURN_IF_ERROR(update.Run());
    if (sqlite3_changes(db_) != 1) {
      return absl::FailedPreconditionError(absl::StrCat("round ", round, " is not open"));
    }
    FEDGE_RETURN_IF_ERROR(DropJournalLocked(round));
    Statement setting(db_, "INSERT OR REPLACE INTO settings(key, value) VALUES(?, ?)");
    FEDGE_RETURN_IF_ERROR(setting.status());
    setting.Bind(1, std::string("strategy_state")).BindBlob(2, strategy_state);
    FEDGE_RETURN_IF_ERROR(setting.Run());
    FEDGE_RETURN_IF_ERROR(txn.Commit());
  }
  std::error_code ignored;
  std::filesystem::remove(CheckpointFile(round), ignored);
  return absl::OkStatus();
}

absl::Status SqliteStateStore::FailRound(uint64_t round, const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Transaction txn(db_);
    FEDGE_RETURN_IF_ERROR(txn.status());
    Statement update(
        db_, "UPDATE rounds SET state = 'failed', reason = ? WHERE round = ? AND state = 'open'");
    FEDGE_RETURN_IF_ERROR(update.status());
    update.Bind(1, reason).Bind(2, static_cast<int64_t>(round));
    FEDGE_RETURN_IF_ERROR(update.Run());
    if (sqlite3_changes(db_) != 1) {
      return absl::FailedPreconditionError(absl::StrCat("round ", round, " is not open"));
    }
    FEDGE_RETURN_IF_ERROR(DropJournalLocked(round));
    FEDGE_RETURN_IF_ERROR(txn.Commit());
  }
  std::error_code ignored;
  std::filesystem::remove(CheckpointFile(round), ignored);
  return absl::OkStatus();
}

absl::StatusOr<std::optional<OpenRoundState>> SqliteStateStore::LoadOpenRound() const {
  std::lock_guard<std::mutex> lock(mu_);
  OpenRoundState open;
  {
    Statement query(db_, absl::StrCat("SELECT ", kRoundColumns,
                                      " FROM rounds WHERE state = 'open' ORDER BY round DESC")
                             .c_str());
    FEDGE_RETURN_IF_ERROR(query.status());
    if (!query.Step()) {
      FEDGE_RETURN_IF_ERROR(query.step_status());
      return std::optional<OpenRoundState>();
    }
    FEDGE_ASSIGN_OR_RETURN(open.record, ReadRound(query));
  }
  const int64_t round = static_cast<int64_t>(open.record.round);
  uint64_t covered = 0;
  {
    Statement query(db_, "SELECT accepted FROM checkpoints WHERE round = ?");
    FEDGE_RETURN_IF_ERROR(query.status());
    query.Bind(1, round);
    if (query.Step()) {
      covered = static_cast<uint64_t>(query.Int(0));
      FEDGE_ASSIGN_OR_RETURN(std::string bytes, proto::ReadFile(CheckpointFile(open.record.round)));
      v1::RoundCheckpoint checkpoint;
      if (!checkpoint.ParseFromString(bytes) || checkpoint.accepted() != covered) {
        return absl::DataLossError(absl::StrCat(CheckpointFile(open.record.round).string(),
                                                " is not the checkpoint of ", covered,
                                                " updates the database records"));
      }
      open.checkpoint = std::move(checkpoint);
    }
    FEDGE_RETURN_IF_ERROR(query.step_status());
  }
  Statement journal(db_,
                    "SELECT seq, payload FROM accepted_updates WHERE round = ? AND seq > ? "
                    "ORDER BY seq");
  FEDGE_RETURN_IF_ERROR(journal.status());
  journal.Bind(1, round).Bind(2, static_cast<int64_t>(covered));
  uint64_t expected = covered + 1;
  while (journal.Step()) {
    v1::EncodedUpdate update;
    if (static_cast<uint64_t>(journal.Int(0)) != expected || journal.IsNull(1) ||
        !update.ParseFromString(journal.Text(1))) {
      return absl::DataLossError(absl::StrCat("the journal of round ", round,
                                              " is broken at entry ", journal.Int(0), " (expected ",
                                              expected, ")"));
    }
    open.journal.push_back(std::move(update));
    ++expected;
  }
  FEDGE_RETURN_IF_ERROR(journal.step_status());
  return std::optional<OpenRoundState>(std::move(open));
}

absl::StatusOr<std::vector<RoundRecord>> SqliteStateStore::Rounds() const {
  std::lock_guard<std::mutex> lock(mu_);
  Statement query(db_,
                  absl::StrCat("SELECT ", kRoundColumns, " FROM rounds ORDER BY round").c_str());
  FEDGE_RETURN_IF_ERROR(query.status());
  std::vector<RoundRecord> rounds;
  while (query.Step()) {
    FEDGE_ASSIGN_OR_RETURN(RoundRecord record, ReadRound(query));
    rounds.push_back(std::move(record));
  }
  FEDGE_RETURN_IF_ERROR(query.step_status());
  return rounds;
}

absl::StatusOr<uint64_t> SqliteStateStore::LastRoundId() const {
  std::lock_guard<std::mutex> lock(mu_);
  Statement query(db_, "SELECT COALESCE(MAX(round), 0) FROM rounds");
  FEDGE_RETURN_IF_ERROR(query.status());
  if (!query.Step()) FEDGE_RETURN_IF_ERROR(query.step_status());
  return static_cast<uint64_t>(query.Int(0));
}

absl::StatusOr<std::vector<std::string>> SqliteStateStore::AcceptedClients(uint64_t round) const {
  std::lock_guard<std::mutex> lock(mu_);
  Statement query(db_, "SELECT client_id FROM accepted_updates WHERE round = ? ORDER BY seq");
  FEDGE_RETURN_IF_ERROR(query.status());
  query.Bind(1, static_cast<int64_t>(round));
  std::vector<std::string> clients;
  while (query.Step()) clients.push_back(query.Text(0));
  FEDGE_RETURN_IF_ERROR(query.step_status());
  return clients;
}

// --- drift ---------------------------------------------------------------------

absl::Status SqliteStateStore::RecordDrift(const v1::DriftReport& report) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction txn(db_);
  FEDGE_RETURN_IF_ERROR(txn.status());
  for (const v1::DriftEvent& event : report.events()) {
    Statement insert(db_,
                     "INSERT INTO drift_events(client_id, model_version, received_at, event) "
                     "VALUES(?, ?, ?, ?)");
    FEDGE_RETURN_IF_ERROR(insert.status());
    insert.Bind(1, report.client_id())
        .Bind(2, static_cast<int64_t>(report.model_version()))
        .Bind(3, NowMs())
        .BindBlob(4, event.SerializeAsString());
    FEDGE_RETURN_IF_ERROR(insert.Run());
  }
  return txn.Commit();
}

absl::StatusOr<std::vector<v1::DriftReport>> SqliteStateStore::DriftReports() const {
  std::lock_guard<std::mutex> lock(mu_);
  Statement query(db_, "SELECT client_id, model_version, event FROM drift_events ORDER BY id");
  FEDGE_RETURN_IF_ERROR(query.status());
  std::vector<v1::DriftReport> reports;
  while (query.Step()) {
    v1::DriftReport report;
    report.set_client_id(query.Text(0));
    report.set_model_version(static_cast<uint64_t>(query.Int(1)));
    if (!report.add_events()->ParseFromString(query.Text(2))) {
      return absl::DataLossError("a stored drift event does not parse");
    }
    reports.push_back(std::move(report));
  }
  FEDGE_RETURN_IF_ERROR(query.step_status());
  return reports;
}

// --- settings ------------------------------------------------------------------

absl::Status SqliteStateStore::PutSetting(const std::string& key, const std::string& value) {
  std::lock_guard<std::mutex> lock(mu_);
  Statement upsert(db_, "INSERT OR REPLACE INTO settings(key, value) VALUES(?, ?)");
  FEDGE_RETURN_IF_ERROR(upsert.status());
  upsert.Bind(1, key).BindBlob(2, value);
  return upsert.Run();
}

absl::StatusOr<std::string> SqliteStateStore::GetSetting(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  Statement query(db_, "SELECT value FROM settings WHERE key = ?");
  FEDGE_RETURN_IF_ERROR(query.status());
  query.Bind(1, key);
  if (!query.Step()) {
    FEDGE_RETURN_IF_ERROR(query.step_status());
    return std::string();
  }
  return query.Text(0);
}

}  // namespace fedge::aggregator
