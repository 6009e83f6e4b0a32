// The routes of the ops endpoint (see ops_server.h) over a FleetControl:
// /metrics, the JSON status API (GET /api/...), the admin API (POST
// /api/...) and the dashboard's files (compiled in from aggregator/web/).
// docs/operations.md documents every route and its JSON.
#ifndef FEDGE_AGGREGATOR_SRC_OPS_API_H_
#define FEDGE_AGGREGATOR_SRC_OPS_API_H_

#include <vector>

#include "fedge/aggregator/fleet_status.h"
#include "fedge/aggregator/ops_server.h"

namespace fedge::aggregator {

// `fleet` must outlive the server the routes are given to. With
// `metrics_public`, GET /metrics needs no token.
std::vector<OpsRoute> FleetOpsRoutes(FleetControl* fleet, bool metrics_public);

}  // namespace fedge::aggregator

#endif  // FEDGE_AGGREGATOR_SRC_OPS_API_H_
