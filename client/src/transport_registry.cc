#include "fedge/client/transport_registry.h"

namespace fedge::client {

Registry<ClientTransportFactory>& ClientTransports() {
  static auto* const registry = new Registry<ClientTransportFactory>("client transport");
  return *registry;
}

absl::StatusOr<std::unique_ptr<ClientTransport>> CreateClientTransport(
    std::string_view name, const ClientTransportOptions& options) {
  absl::StatusOr<ClientTransportFactory> factory = ClientTransports().Find(name);
  if (!factory.ok()) return factory.status();
  return (*factory)(options);
}

std::vector<std::string> RegisteredClientTransports() { return ClientTransports().Names(); }

}  // namespace fedge::client
