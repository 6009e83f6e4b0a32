// SoftHSM2 tokens for tests (Debian softhsm2): one token directory per test
// process, made on first use, holding a few initialized tokens. SoftHSM
// reads SOFTHSM2_CONF once, when the module is first initialized, and fedge
// never finalizes a module, so every token a process uses is made here,
// before any PKCS#11 call. Tests keep apart by using their own key labels.
#ifndef FEDGE_TESTS_SOFTHSM_H_
#define FEDGE_TESTS_SOFTHSM_H_

#include <stdlib.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace fedge::testing_util {

inline constexpr char kSoftHsmModule[] = "/usr/lib/softhsm/libsofthsm2.so";
inline constexpr char kTokenPin[] = "4715";
// The tokens every test process has: the aggregator's Ed25519 signing keys,
// its EC TLS and CA keys, a device's EC key. Ed25519 keys stay off the EC
// keys' tokens: libp11 0.4.12 (the engine TLS keys go through) cannot list
// the keys of a token that holds an EdDSA key (docs/security.md).
inline constexpr char kSigningToken[] = "fedge-signing";
inline constexpr char kTlsToken[] = "fedge-tls";
inline constexpr char kDeviceToken[] = "fedge-device";
inline constexpr const char* kTokenLabels[] = {kSigningToken, kTlsToken, kDeviceToken};

// True once the tokens exist (adds a test failure when they cannot be made).
inline bool SoftHsmReady() {
  static const bool ready = [] {
    if (!std::filesystem::exists(kSoftHsmModule)) {
      ADD_FAILURE() << "SoftHSM2 is not installed (" << kSoftHsmModule
                    << "); scripts/setup.sh installs softhsm2";
      return false;
    }
    const std::filesystem::path dir = std::filesystem::path(::testing::TempDir()) /
                                      ("softhsm-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir / "tokens");
    const std::filesystem::path conf = dir / "softhsm2.conf";
    std::ofstream(conf) << "directories.tokendir = " << (dir / "tokens").string()
                        << "\nobjectstore.backend = file\nlog.level = ERROR\n";
    ::setenv("SOFTHSM2_CONF", conf.c_str(), 1);
    for (const char* label : kTokenLabels) {
      const std::string command = std::string("softhsm2-util --init-token --free --label ") +
                                  label + " --pin " + kTokenPin + " --so-pin 9876 > /dev/null";
      if (std::system(command.c_str()) != 0) {
        ADD_FAILURE() << "softhsm2-util could not make token " << label;
        return false;
      }
    }
    return true;
  }();
  return ready;
}

// The PKCS#11 URI of key `object` on token `token`, with the module and PIN.
inline std::string TokenKeyUri(const std::string& token, const std::string& object) {
  return "pkcs11:token=" + token + ";object=" + object + "?module-path=" + kSoftHsmModule +
         "&pin-value=" + kTokenPin;
}

}  // namespace fedge::testing_util

#endif  // FEDGE_TESTS_SOFTHSM_H_
