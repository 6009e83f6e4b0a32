// fedge-aggregator's key commands (docs/security.md): keys made in a PKCS#11
// token or a file, and the signing key's rotation chain. They touch no state
// directory and no running aggregator.
//
//   fedge-aggregator keygen --key REF --type ed25519|ec-p256
//                           [--public-out FILE] [--csr-cn NAME --csr-out FILE]
//   fedge-aggregator endorse-key --key CURRENT --new-key NEXT --chain FILE
#ifndef FEDGE_AGGREGATOR_TOOLS_KEY_COMMANDS_H_
#define FEDGE_AGGREGATOR_TOOLS_KEY_COMMANDS_H_

#include <map>
#include <string>

#include "absl/status/status.h"

namespace fedge::aggregator::tools {

// The usage lines of the key commands, for --help.
extern const char kKeyCommandsHelp[];

// True for "keygen" and "endorse-key".
bool IsKeyCommand(const std::string& command);

// Runs a key command with its --flags (name without dashes -> value);
// INVALID_ARGUMENT names a missing or unknown flag. Prints what it made.
absl::Status RunKeyCommand(const std::string& command,
                           const std::map<std::string, std::string>& flags);

}  // namespace fedge::aggregator::tools

#endif  // FEDGE_AGGREGATOR_TOOLS_KEY_COMMANDS_H_
