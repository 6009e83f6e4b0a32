#include "ops_api.h"

#include <cmath>
#include <limits>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge_dashboard_assets.h"  // generated from aggregator/web/
#include "nlohmann/json.hpp"

namespace fedge::aggregator {
namespace {

using nlohmann::json;

// Non-finite numbers are not JSON: they become null.
json Number(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

template <typename T>
json Optional(const std::optional<T>& v) {
  if (!v.has_value()) return nullptr;
  if constexpr (std::is_floating_point_v<T>) {
    return Number(*v);
  } else {
    return *v;
  }
}

json Metrics(const std::map<std::string, double>& metrics) {
  json out = json::object();
  for (const auto& [key, value] : metrics) out[key] = Number(value);
  return out;
}

json ToJson(const RoundSummary& r) {
  return {{"round", r.round},
          {"model_version", r.model_version},
          {"outcome", r.outcome},
          {"opened_at_ms", r.opened_at_ms},
          {"closed_at_ms", r.closed_at_ms},
          {"duration_ms", r.closed_at_ms > 0 ? r.closed_at_ms - r.opened_at_ms : 0},
          {"selected", r.selected},
          {"reported", r.reported},
          {"dropped", r.dropped},
          {"bytes_up", r.bytes_up},
          {"bytes_down", r.bytes_down},
          {"new_version", r.new_version},
          {"reason", r.reason}};
}

json ToJson(const CurrentRound& c) {
  json out = {{"open", c.open},
              {"paused", c.paused},
              {"phase", c.phase},
              {"goal", c.goal},
              {"deadline_at_ms", c.deadline_at_ms},
              {"devices_available", c.devices_available},
              {"min_clients", c.min_clients},
              {"next_round", c.next_round},
              {"closed_rounds", c.closed_rounds}};
  out["round"] = c.open ? json(ToJson(c.round)) : json(nullptr);
  return out;
}

json ToJson(const DeviceStatus& d) {
  return {{"id", d.id},
          {"status", d.status},
          {"auth", d.auth},
          {"enrolled_at_ms", d.enrolled_at_ms},
          {"last_seen_ms", d.last_seen_ms},
          {"last_work_ms", d.last_work_ms},
          {"left", d.left_at_ms > 0 ? json{{"time_ms", d.left_at_ms}, {"reason", d.left_reason}}
                                    : json(nullptr)},
          {"model_version", d.has_model_version ? json(d.model_version) : json(nullptr)},
          {"last_drift", d.drift_reports > 0 ? json{{"time_ms", d.last_drift_ms},
                                                    {"detector", d.last_drift_detector},
                                                    {"stream", d.last_drift_stream}}
                                             : json(nullptr)},
          {"drift_reports", d.drift_reports},
          {"rounds_selected", d.rounds_selected},
          {"updates_accepted", d.updates_accepted},
          {"failures", {{"updates_refused", d.updates_refused}, {"tasks_failed", d.tasks_failed}}},
          {"last_metrics", Metrics(d.last_metrics)}};
}

json ToJson(const VersionStatus& v) {
  const VersionRecord& r = v.record;
  return {{"version", r.version},
          {"parent", r.parent},
          {"round", r.round},
          {"created_at_ms", r.created_at_ms},
          {"note", r.note},
          {"status", r.status},
          {"status_reason", r.status_reason},
          {"artifact_bytes", r.artifact_bytes},
          {"fp32_bytes", r.master_bytes},
          {"metrics", Metrics(r.metrics)},
          {"signature", v.signature},
          {"served", v.served}};
}

json ToJson(const FleetEvent& e) {
  return {{"sequence", e.sequence}, {"time_ms", e.time_ms}, {"level", e.level},
          {"kind", e.kind},         {"message", e.message}, {"fields", e.fields}};
}

OpsResponse Json(const json& body, int status = 200) {
  OpsResponse response;
  response.status = status;
  response.body = body.dump();
  return response;
}

OpsResponse FromStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return OpsResponse::Error(400, std::string(status.message()));
    case absl::StatusCode::kNotFound:
      return OpsResponse::Error(404, std::string(status.message()));
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
      return OpsResponse::Error(409, std::string(status.message()));
    case absl::StatusCode::kUnavailable:
      return OpsResponse::Error(503, std::string(status.message()));
    default:
      return OpsResponse::Error(500, std::string(status.message()));
  }
}

// Checks that `request` carries only `known` query parameters.
absl::Status OnlyParameters(const OpsRequest& request, std::initializer_list<const char*> known) {
  for (const auto& [name, value] : request.query) {
    bool ok = false;
    for (const char* k : known) ok = ok || name == k;
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown query parameter '", name, "'",
          known.size() == 0 ? std::string(" (this endpoint takes none)")
                            : absl::StrCat(" (known: ", absl::StrJoin(known, ", "), ")")));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> UintParameter(const OpsRequest& request, const char* name,
                                       uint64_t fallback, uint64_t min, uint64_t max) {
  auto it = request.query.find(name);
  if (it == request.query.end()) return fallback;
  uint64_t v;
  if (!absl::SimpleAtoi(it->second, &v) || v < min || v > max) {
    return absl::InvalidArgumentError(absl::StrCat("query parameter '", name, "': '", it->second,
                                                   "' is not an integer in [", min, ", ", max,
                                                   "]"));
  }
  return v;
}

absl::StatusOr<uint64_t> VersionParameter(const OpsRequest& request) {
  uint64_t v;
  if (request.params.empty() || !absl::SimpleAtoi(request.params[0], &v)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", request.params.empty() ? "" : request.params[0], "' is not a version number"));
  }
  return v;
}

// The optional {"reason": "..."} of an admin request.
absl::StatusOr<std::string> Reason(const OpsRequest& request) {
  if (request.body.empty()) return std::string();
  json body = json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) {
    return absl::InvalidArgumentError(
        "the request body must be a JSON object, e.g. {\"reason\": \"...\"}");
  }
  if (!body.contains("reason")) return std::string();
  if (!body["reason"].is_string() || body["reason"].get<std::string>().size() > 500) {
    return absl::InvalidArgumentError(
        "body field 'reason' must be a string of at most 500 characters");
  }
  return body["reason"].get<std::string>();
}

#define FEDGE_OPS_TRY(lhs, expr)                            \
  auto lhs##_or = (expr);                                   \
  if (!lhs##_or.ok()) return FromStatus(lhs##_or.status()); \
  auto lhs = *std::move(lhs##_or)

#define FEDGE_OPS_CHECK(expr) \
  if (absl::Status s_ = (expr); !s_.ok()) return FromStatus(s_)

}  // namespace

std::vector<OpsRoute> FleetOpsRoutes(FleetControl* fleet, bool metrics_public) {
  std::vector<OpsRoute> routes;
  auto get = [&](std::string pattern, std::function<OpsResponse(const OpsRequest&)> handler) {
    routes.push_back({"GET", std::move(pattern), OpsAccess::kToken, std::move(handler)});
  };
  auto post = [&](std::string pattern, std::function<OpsResponse(const OpsRequest&)> handler) {
    routes.push_back({"POST", std::move(pattern), OpsAccess::kToken, std::move(handler)});
  };

  routes.push_back({"GET", "/metrics", metrics_public ? OpsAccess::kPublic : OpsAccess::kToken,
                    [fleet](const OpsRequest&) {
                      OpsResponse response;
                      response.content_type = "text/plain; version=0.0.4; charset=utf-8";
                      response.body = fleet->RenderMetrics();
                      return response;
                    }});

  get("/api/overview", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {}));
    const FleetOverview o = fleet->Overview();
    json devices = {{"total", o.devices}, {"with_drift", o.devices_with_drift}};
    for (std::string_view s : kDeviceStatuses) {
      auto it = o.devices_by_status.find(std::string(s));
      devices[std::string(s)] = it == o.devices_by_status.end() ? 0 : it->second;
    }
    return Json(
        {{"latest_version", o.latest_version},
         {"live_version", Optional(o.live_version)},
         {"accuracy", Optional(o.accuracy)},
         {"accuracy_source", o.accuracy_source},
         {"loss", Optional(o.loss)},
         {"epsilon", {{"spent", Number(o.epsilon_spent)}, {"budget", Optional(o.epsilon_budget)}}},
         {"devices", devices},
         {"alerts", o.alerts},
         {"last_event", o.last_event},
         {"rounds", {{"closed", o.round.closed_rounds}, {"failed", o.rounds_failed}}},
         {"round", ToJson(o.round)}});
  });

  get("/api/round", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {}));
    return Json(ToJson(fleet->Round()));
  });

  get("/api/rounds", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {"limit", "before"}));
    FEDGE_OPS_TRY(limit, UintParameter(request, "limit", 50, 1, 1000));
    FEDGE_OPS_TRY(before,
                  UintParameter(request, "before", 0, 0, std::numeric_limits<int64_t>::max()));
    json rounds = json::array();
    for (const RoundSummary& r : fleet->RoundHistory(limit, before)) rounds.push_back(ToJson(r));
    return Json({{"rounds", rounds}});
  });

  get("/api/devices", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {"offset", "limit", "q", "status", "drift"}));
    DeviceQuery query;
    FEDGE_OPS_TRY(offset, UintParameter(request, "offset", 0, 0, 1ull << 40));
    FEDGE_OPS_TRY(limit, UintParameter(request, "limit", 50, 1, 1000));
    query.offset = offset;
    query.limit = limit;
    if (auto it = request.query.find("q"); it != request.query.end())
      query.id_contains = it->second;
    if (auto it = request.query.find("status"); it != request.query.end() && !it->second.empty()) {
      if (!ValidDeviceStatus(it->second)) {
        return OpsResponse::Error(400, absl::StrCat("query parameter 'status': '", it->second,
                                                    "' is not active, idle, gone or revoked"));
      }
      query.status = it->second;
    }
    if (auto it = request.query.find("drift"); it != request.query.end() && !it->second.empty()) {
      if (it->second == "yes" || it->second == "true") {
        query.drift = true;
      } else if (it->second == "no" || it->second == "false") {
        query.drift = false;
      } else {
        return OpsResponse::Error(
            400, absl::StrCat("query parameter 'drift': '", it->second, "' is not yes or no"));
      }
    }
    FEDGE_OPS_TRY(page, fleet->Devices(query));
    json devices = json::array();
    for (const DeviceStatus& d : page.devices) devices.push_back(ToJson(d));
    return Json(
        {{"total", page.total}, {"offset", page.offset}, {"limit", limit}, {"devices", devices}});
  });

  get("/api/versions", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {"limit"}));
    FEDGE_OPS_TRY(limit, UintParameter(request, "limit", 100, 1, 100000));
    FEDGE_OPS_TRY(versions, fleet->Versions());
    json out = json::array();
    for (const VersionStatus& v : versions) {
      if (out.size() >= limit) break;
      out.push_back(ToJson(v));
    }
    return Json({{"total", versions.size()}, {"versions", out}});
  });

  get("/api/events", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {"after", "limit", "kind"}));
    FEDGE_OPS_TRY(after,
                  UintParameter(request, "after", 0, 0, std::numeric_limits<int64_t>::max()));
    FEDGE_OPS_TRY(limit, UintParameter(request, "limit", 100, 1, 2000));
    std::string kind;
    if (auto it = request.query.find("kind"); it != request.query.end()) kind = it->second;
    // "rollout_*" matches every kind starting with "rollout_".
    const bool prefix = !kind.empty() && kind.back() == '*';
    if (prefix) kind.pop_back();
    std::vector<FleetEvent> events =
        fleet->events().Since(after, std::numeric_limits<size_t>::max());
    json out = json::array();
    size_t skip = 0;
    std::vector<const FleetEvent*> matching;
    for (const FleetEvent& e : events) {
      if (kind.empty() || (prefix ? e.kind.starts_with(kind) : e.kind == kind)) {
        matching.push_back(&e);
      }
    }
    if (matching.size() > limit) skip = matching.size() - limit;  // the newest `limit`
    for (size_t i = skip; i < matching.size(); ++i) out.push_back(ToJson(*matching[i]));
    return Json({{"last_sequence", fleet->events().last_sequence()}, {"events", out}});
  });

  post("/api/devices/{}/revoke", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {}));
    FEDGE_OPS_TRY(reason, Reason(request));
    FEDGE_OPS_CHECK(fleet->RevokeDevice(request.params[0], reason));
    return Json({{"ok", true}, {"device", request.params[0]}, {"status", "revoked"}});
  });
  post("/api/rounds/pause", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {}));
    FEDGE_OPS_TRY(reason, Reason(request));
    FEDGE_OPS_CHECK(fleet->PauseRounds(reason));
    return Json({{"ok", true}, {"paused", true}});
  });
  post("/api/rounds/resume", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {}));
    FEDGE_OPS_TRY(reason, Reason(request));
    FEDGE_OPS_CHECK(fleet->ResumeRounds(reason));
    return Json({{"ok", true}, {"paused", false}});
  });
  post("/api/versions/{}/promote", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {}));
    FEDGE_OPS_TRY(version, VersionParameter(request));
    FEDGE_OPS_TRY(reason, Reason(request));
    FEDGE_OPS_CHECK(fleet->Promote(version, reason));
    return Json({{"ok", true}, {"version", version}, {"status", "live"}});
  });
  post("/api/versions/{}/rollback", [fleet](const OpsRequest& request) {
    FEDGE_OPS_CHECK(OnlyParameters(request, {}));
    FEDGE_OPS_TRY(version, VersionParameter(request));
    FEDGE_OPS_TRY(reason, Reason(request));
    FEDGE_OPS_TRY(published, fleet->RollBackTo(version, reason));
    return Json({{"ok", true}, {"rolled_back_to", version}, {"version", published}});
  });

  // The dashboard: public files (the data they show needs the token).
  for (const DashboardAsset& asset : kDashboardAssets) {
    routes.push_back({"GET", asset.path, OpsAccess::kPublic, [asset](const OpsRequest&) {
                        OpsResponse response;
                        response.content_type = asset.content_type;
                        response.body.assign(reinterpret_cast<const char*>(asset.data), asset.size);
                        response.headers["Content-Security-Policy"] =
                            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";
                        return response;
                      }});
  }
  return routes;
}

}  // namespace fedge::aggregator
