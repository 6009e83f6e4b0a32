#include "fedge/client/drift_monitor.h"

#include <cmath>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fedge/proto/status_macros.h"

namespace fedge::client {
namespace {

const std::map<std::string, std::string>& DefaultStreams() {
  static const auto* streams = new std::map<std::string, std::string>{
      {"page-hinkley", "error"},    {"adwin", "error"}, {"ddm", "error"},
      {"confidence", "confidence"}, {"ks", "features"}, {"psi", "features"}};
  return *streams;
}

absl::Status OptionError(std::string_view field, const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat("DriftMonitorOptions.", std::string(field), ": ", what));
}

}  // namespace

absl::StatusOr<std::unique_ptr<DriftMonitor>> DriftMonitor::Create(std::string client_id,
                                                                   DriftMonitorOptions options) {
  if (options.detectors.empty()) return OptionError("detectors", "list at least one detector");
  if (options.cooldown < 0) {
    return OptionError("cooldown", absl::StrCat("must be >= 0, got ", options.cooldown));
  }
  if (options.max_events < 1) {
    return OptionError("max_events", absl::StrCat("must be >= 1, got ", options.max_events));
  }
  options.detector_options.features = options.features;
  std::vector<Watch> watches;
  std::set<std::string> keys;
  bool trigger_found = options.trigger == "any";
  for (const std::string& entry : options.detectors) {
    const size_t colon = entry.find(':');
    Watch watch;
    watch.name = entry.substr(0, colon);
    if (colon != std::string::npos) {
      watch.stream_name = entry.substr(colon + 1);
    } else if (auto it = DefaultStreams().find(watch.name); it != DefaultStreams().end()) {
      watch.stream_name = it->second;
    } else {
      return OptionError("detectors",
                         absl::StrCat("'", entry, "' has no default stream; write name:stream"));
    }
    static const std::map<std::string, Stream> kStreams = {{"error", Stream::kError},
                                                           {"loss", Stream::kLoss},
                                                           {"confidence", Stream::kConfidence},
                                                           {"features", Stream::kFeatures}};
    auto stream = kStreams.find(watch.stream_name);
    if (stream == kStreams.end()) {
      return OptionError("detectors",
                         absl::StrCat("'", entry, "': unknown stream '", watch.stream_name,
                                      "' (error, loss, confidence, features)"));
    }
    watch.stream = stream->second;
    const std::string key = absl::StrCat(watch.name, ":", watch.stream_name);
    if (!keys.insert(key).second) {
      return OptionError("detectors", absl::StrCat("'", key, "' is listed twice"));
    }
    if (watch.stream == Stream::kFeatures && options.features < 1) {
      return OptionError("features",
                         absl::StrCat("must be >= 1 for '", key, "', got ", options.features));
    }
    if (watch.name == "ddm" && watch.stream != Stream::kError) {
      return OptionError("detectors", "ddm watches 0/1 errors only ('ddm:error')");
    }
    absl::StatusOr<std::unique_ptr<DriftDetector>> detector =
        CreateDriftDetector(watch.name, options.detector_options);
    if (!detector.ok()) return detector.status();
    watch.detector = std::move(*detector);
    const size_t want =
        watch.stream == Stream::kFeatures ? static_cast<size_t>(options.features) : 1;
    if (watch.detector->observation_size() != want) {
      return OptionError(
          "detectors",
          absl::StrCat("'", key, "' takes observations of ", watch.detector->observation_size(),
                       " values, the stream '", watch.stream_name, "' gives ", want));
    }
    watch.trigger =
        options.trigger == "any" || options.trigger == watch.name || options.trigger == key;
    trigger_found = trigger_found || watch.trigger;
    watches.push_back(std::move(watch));
  }
  if (!trigger_found) {
    return OptionError("trigger", absl::StrCat("'", options.trigger,
                                               "' is neither 'any' nor one of the detectors"));
  }
  return std::unique_ptr<DriftMonitor>(
      new DriftMonitor(std::move(client_id), std::move(options), std::move(watches)));
}

std::vector<std::string> DriftMonitor::detector_keys() const {
  std::vector<std::string> keys;
  for (const Watch& w : watches_) keys.push_back(absl::StrCat(w.name, ":", w.stream_name));
  return keys;
}

absl::Status DriftMonitor::SetReference(std::span<const float> features,
                                        std::span<const float> confidence) {
  // Try every detector on a copy of its state first, so a refused reference
  // changes nothing.
  std::vector<std::string> saved;
  for (const Watch& w : watches_) saved.push_back(w.detector->SaveState());
  for (size_t i = 0; i < watches_.size(); ++i) {
    Watch& w = watches_[i];
    std::span<const float> rows;
    if (w.stream == Stream::kFeatures) {
      rows = features;
    } else if (w.stream == Stream::kConfidence && w.detector->uses_reference()) {
      rows = confidence;
    } else {
      continue;
    }
    if (rows.empty()) continue;
    if (absl::Status s = w.detector->SetReference(rows); !s.ok()) {
      for (size_t j = 0; j < i; ++j) (void)watches_[j].detector->RestoreState(saved[j]);
      return absl::Status(s.code(), absl::StrCat("reference for ", w.name, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status DriftMonitor::CheckBatch(Stream a, std::span<const float> va, Stream b,
                                      std::span<const float> vb, size_t* n) const {
  const size_t features = static_cast<size_t>(std::max(options_.features, 1));
  auto rows = [&](Stream s, std::span<const float> v) {
    return s == Stream::kFeatures ? v.size() / features : v.size();
  };
  if (a == Stream::kFeatures && va.size() % features != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("feature rows have ", features, " values each; got ", va.size(), " values"));
  }
  if (va.empty() && vb.empty()) return absl::InvalidArgumentError("nothing to observe");
  if (!va.empty() && !vb.empty() && rows(a, va) != rows(b, vb)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the two inputs describe ", rows(a, va), " and ", rows(b, vb), " examples"));
  }
  *n = va.empty() ? rows(b, vb) : rows(a, va);
  for (std::span<const float> v : {va, vb}) {
    for (size_t i = 0; i < v.size(); ++i) {
      if (!std::isfinite(v[i])) {
        return absl::InvalidArgumentError(absl::StrCat("value ", i, " is not finite"));
      }
    }
  }
  for (const Watch& w : watches_) {
    if (w.stream == Stream::kError) {
      std::span<const float> errors =
          a == Stream::kError ? va : (b == Stream::kError ? vb : std::span<const float>());
      for (float e : errors) {
        if (e != 0.0f && e != 1.0f) {
          return absl::InvalidArgumentError(absl::StrCat("errors are 0 or 1, got ", e));
        }
      }
    }
    const bool fed = (w.stream == a && !va.empty()) || (w.stream == b && !vb.empty());
    if (fed && !w.detector->ready()) {
      return absl::FailedPreconditionError(
          absl::StrCat(w.name, " has no reference yet; call SetReference first"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<MonitorOutcome> DriftMonitor::ObserveInference(std::span<const float> features,
                                                              std::span<const float> confidence,
                                                              uint64_t model_version,
                                                              int64_t time) {
  return Feed(Stream::kFeatures, features, Stream::kConfidence, confidence, model_version, time);
}

absl::StatusOr<MonitorOutcome> DriftMonitor::ObserveFeedback(std::span<const float> loss,
                                                             std::span<const float> error,
                                                             uint64_t model_version, int64_t time) {
  return Feed(Stream::kLoss, loss, Stream::kError, error, model_version, time);
}

absl::StatusOr<MonitorOutcome> DriftMonitor::Feed(Stream a, std::span<const float> va, Stream b,
                                                  std::span<const float> vb, uint64_t model_version,
                                                  int64_t time) {
  size_t n = 0;
  FEDGE_RETURN_IF_ERROR(CheckBatch(a, va, b, vb, &n));
  MonitorOutcome outcome;
  bool triggered = false;
  std::vector<v1::DriftEvent> trigger_events;
  const size_t features = static_cast<size_t>(std::max(options_.features, 1));
  for (size_t i = 0; i < n; ++i) {
    for (Watch& w : watches_) {
      std::span<const float> source;
      if (w.stream == a)
        source = va;
      else if (w.stream == b)
        source = vb;
      else
        continue;
      if (source.empty()) continue;
      const size_t width = w.stream == Stream::kFeatures ? features : 1;
      const int64_t seen = w.detector->observations();
      absl::StatusOr<DriftDecision> decision = w.detector->Add(source.subspan(i * width, width));
      if (!decision.ok()) return decision.status();  // unreachable after CheckBatch
      if (!decision->drift()) continue;
      v1::DriftEvent event;
      event.set_detector(w.name);
      event.set_stream(w.stream_name);
      event.set_statistic(decision->statistic);
      event.set_threshold(decision->threshold);
      event.set_observations(static_cast<uint64_t>(seen + 1));
      event.set_monitor_samples(samples_ + i + 1);
      event.set_model_version(model_version);
      event.set_time(time);
      outcome.alarms.push_back(event);
      events_.push_back(event);
      if (static_cast<int>(events_.size()) > options_.max_events) events_.pop_front();
      if (w.trigger) {
        triggered = true;
        trigger_events.push_back(event);
      }
    }
  }
  samples_ += n;
  if (triggered && (!has_reported_ || time - last_report_time_ >= options_.cooldown)) {
    v1::DriftReport report;
    report.set_client_id(client_id_);
    report.set_model_version(model_version);
    for (v1::DriftEvent& e : trigger_events) *report.add_events() = std::move(e);
    report.set_request_join(true);
    outcome.report = std::move(report);
    has_reported_ = true;
    last_report_time_ = time;
  }
  return outcome;
}

void DriftMonitor::ResetDetectors() {
  for (Watch& w : watches_) w.detector->Reset();
}

std::string DriftMonitor::SaveState() const {
  v1::DriftMonitorState state;
  for (const Watch& w : watches_) {
    state.add_detector_keys(absl::StrCat(w.name, ":", w.stream_name));
    if (!state.add_detectors()->ParseFromString(w.detector->SaveState())) {
      state.mutable_detectors()->RemoveLast();  // unreachable: detectors emit valid states
    }
  }
  state.set_samples(samples_);
  state.set_has_reported(has_reported_);
  state.set_last_report_time(last_report_time_);
  for (const v1::DriftEvent& e : events_) *state.add_events() = e;
  return state.SerializeAsString();
}

absl::Status DriftMonitor::RestoreState(std::string_view blob) {
  v1::DriftMonitorState state;
  if (!state.ParseFromArray(blob.data(), static_cast<int>(blob.size()))) {
    return absl::InvalidArgumentError("drift monitor state: not a serialized DriftMonitorState");
  }
  const std::vector<std::string> keys = detector_keys();
  const std::vector<std::string> saved(state.detector_keys().begin(), state.detector_keys().end());
  if (saved != keys || state.detectors_size() != static_cast<int>(keys.size())) {
    return absl::InvalidArgumentError(
        absl::StrCat("drift monitor state: saved for detectors [", absl::StrJoin(saved, ", "),
                     "], this monitor runs [", absl::StrJoin(keys, ", "), "]"));
  }
  // Restore into fresh detectors first; swap only when all succeed.
  std::vector<std::unique_ptr<DriftDetector>> restored;
  for (size_t i = 0; i < watches_.size(); ++i) {
    FEDGE_ASSIGN_OR_RETURN(auto detector,
                           CreateDriftDetector(watches_[i].name, options_.detector_options));
    if (absl::Status s =
            detector->RestoreState(state.detectors(static_cast<int>(i)).SerializeAsString());
        !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("drift monitor state: ", s.message()));
    }
    restored.push_back(std::move(detector));
  }
  for (size_t i = 0; i < watches_.size(); ++i) watches_[i].detector = std::move(restored[i]);
  samples_ = state.samples();
  has_reported_ = state.has_reported();
  last_report_time_ = state.last_report_time();
  events_.assign(state.events().begin(), state.events().end());
  while (static_cast<int>(events_.size()) > options_.max_events) events_.pop_front();
  return absl::OkStatus();
}

}  // namespace fedge::client
