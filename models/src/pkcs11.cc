#include "fedge/models/pkcs11.h"

#include <dlfcn.h>
#include <p11-kit/pkcs11.h>

#include <map>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "fedge/proto/status_macros.h"
#include "fedge/proto/atomic_file.h"

namespace fedge::models {

struct Pkcs11Session::Module {
  std::string path;
  CK_FUNCTION_LIST_PTR functions = nullptr;
};

namespace {

constexpr std::string_view kScheme = "pkcs11:";
// DER of the curve OIDs (CKA_EC_PARAMS): 1.3.101.112 (Ed25519, RFC 8410)
// and 1.2.840.10045.3.1.7 (secp256r1, RFC 5480).
constexpr unsigned char kEd25519Params[] = {0x06, 0x03, 0x2b, 0x65, 0x70};
constexpr unsigned char kP256Params[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

std::string RvName(CK_RV rv) {
  switch (rv) {
    case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
    case CKR_ATTRIBUTE_SENSITIVE: return "CKR_ATTRIBUTE_SENSITIVE";
    case CKR_ATTRIBUTE_TYPE_INVALID: return "CKR_ATTRIBUTE_TYPE_INVALID";
    case CKR_MECHANISM_INVALID: return "CKR_MECHANISM_INVALID";
    case CKR_KEY_TYPE_INCONSISTENT: return "CKR_KEY_TYPE_INCONSISTENT";
    case CKR_USER_NOT_LOGGED_IN: return "CKR_USER_NOT_LOGGED_IN";
    case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
    default: return absl::StrCat("CKR 0x", absl::Hex(rv));
  }
}

absl::Status Failed(std::string_view what, CK_RV rv) {
  return absl::InternalError(absl::StrCat("PKCS#11 ", std::string(what), " failed: ", RvName(rv)));
}

absl::StatusOr<std::string> PercentDecode(std::string_view text, std::string_view attribute) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out.push_back(text[i]);
      continue;
    }
    int value = 0;
    if (i + 2 >= text.size() ||
        !absl::ascii_isxdigit(static_cast<unsigned char>(text[i + 1])) ||
        !absl::ascii_isxdigit(static_cast<unsigned char>(text[i + 2])) ||
        !absl::SimpleHexAtoi(std::string(text.substr(i + 1, 2)), &value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("PKCS#11 URI attribute '", std::string(attribute), "': bad % escape"));
    }
    out.push_back(static_cast<char>(value));
    i += 2;
  }
  return out;
}

std::string PercentEncode(std::string_view raw) {
  std::string out;
  for (unsigned char c : raw) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppend(&out, "%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

// Loaded modules by path; never unloaded or finalized (libp11 may share them).
absl::StatusOr<const Pkcs11Session::Module*> LoadModule(const std::string& path) {
  static std::mutex mu;
  static auto* modules = new std::map<std::string, Pkcs11Session::Module>();
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = modules->find(path); it != modules->end()) return &it->second;
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot load the PKCS#11 module '", path, "': ", dlerror()));
  }
  auto get_list = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST_PTR functions = nullptr;
  if (get_list == nullptr || get_list(&functions) != CKR_OK || functions == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("'", path, "' is not a PKCS#11 module (no C_GetFunctionList)"));
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  if (CK_RV rv = functions->C_Initialize(&args);
      rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    return absl::FailedPreconditionError(
        absl::StrCat("PKCS#11 module '", path, "': C_Initialize failed: ", RvName(rv)));
  }
  Pkcs11Session::Module& module = (*modules)[path];
  module.path = path;
  module.functions = functions;
  return &module;
}

// A token label is 32 bytes padded with spaces.
std::string TrimLabel(const unsigned char* label, size_t size) {
  std::string text(reinterpret_cast<const char*>(label), size);
  return std::string(absl::StripTrailingAsciiWhitespace(text));
}

}  // namespace

bool IsPkcs11Uri(std::string_view key_ref) { return key_ref.substr(0, kScheme.size()) == kScheme; }

absl::Status CheckKeyRef(std::string_view key_ref) {
  if (!IsPkcs11Uri(key_ref)) return absl::OkStatus();
  return Pkcs11Uri::Parse(key_ref).status();
}

absl::StatusOr<Pkcs11Uri> Pkcs11Uri::Parse(std::string_view uri) {
  if (!IsPkcs11Uri(uri)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", std::string(uri.substr(0, 40)), "' is not a PKCS#11 URI (pkcs11:...)"));
  }
  std::string_view rest = uri.substr(kScheme.size());
  std::string_view path = rest, query;
  if (size_t q = rest.find('?'); q != std::string_view::npos) {
    path = rest.substr(0, q);
    query = rest.substr(q + 1);
  }
  Pkcs11Uri out;
  std::map<std::string, std::string> seen;
  auto take = [&](std::string_view part, bool in_query) -> absl::Status {
    if (part.empty()) return absl::OkStatus();
    size_t eq = part.find('=');
    if (eq == std::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("PKCS#11 URI: '", std::string(part), "' is not name=value"));
    }
    std::string name(part.substr(0, eq));
    FEDGE_ASSIGN_OR_RETURN(std::string value, PercentDecode(part.substr(eq + 1), name));
    if (!seen.emplace(name, value).second) {
      return absl::InvalidArgumentError(absl::StrCat("PKCS#11 URI: '", name, "' given twice"));
    }
    const bool known = in_query ? (name == "module-path" || name == "pin-value" ||
                                   name == "pin-source")
                                : (name == "token" || name == "object" || name == "id" ||
                                   name == "type");
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PKCS#11 URI: unknown ", in_query ? "query" : "path", " attribute '", name,
          in_query ? "' (known: module-path, pin-value, pin-source)"
                   : "' (known: token, object, id, type)"));
    }
    if (name == "token") out.token = value;
    if (name == "object") out.object = value;
    if (name == "id") out.id = value;
    if (name == "module-path") out.module_path = value;
    if (name == "pin-value") out.pin = value;
    return absl::OkStatus();
  };
  for (absl::string_view part : absl::StrSplit(std::string(path), ';')) {
    FEDGE_RETURN_IF_ERROR(take(std::string_view(part.data(), part.size()), false));
  }
  for (absl::string_view part : absl::StrSplit(std::string(query), '&')) {
    FEDGE_RETURN_IF_ERROR(take(std::string_view(part.data(), part.size()), true));
  }
  if (seen.count("pin-value") && seen.count("pin-source")) {
    return absl::InvalidArgumentError("PKCS#11 URI: pin-value and pin-source are exclusive");
  }
  if (auto source = seen.find("pin-source"); source != seen.end()) {
    absl::StatusOr<std::string> pin = proto::ReadFile(source->second);
    if (!pin.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("PKCS#11 URI: pin-source: ", pin.status().message()));
    }
    out.pin = std::string(absl::StripTrailingAsciiWhitespace(*pin));
  }
  if (out.module_path.empty()) {
    return absl::InvalidArgumentError(
        "PKCS#11 URI: module-path (the token's PKCS#11 library) is required");
  }
  if (out.object.empty() && out.id.empty()) {
    return absl::InvalidArgumentError("PKCS#11 URI: name the key with object= or id=");
  }
  return out;
}

std::string Pkcs11Uri::KeyUri() const {
  std::vector<std::string> parts;
  if (!token.empty()) parts.push_back("token=" + PercentEncode(token));
  if (!object.empty()) parts.push_back("object=" + PercentEncode(object));
  if (!id.empty()) parts.push_back("id=" + PercentEncode(id));
  return absl::StrCat(std::string(kScheme), absl::StrJoin(parts, ";"));
}

// --- Pkcs11Session ------------------------------------------------------------

absl::StatusOr<std::shared_ptr<Pkcs11Session>> Pkcs11Session::Open(const Pkcs11Uri& uri) {
  FEDGE_ASSIGN_OR_RETURN(const Module* module, LoadModule(uri.module_path));
  CK_FUNCTION_LIST_PTR f = module->functions;
  CK_ULONG count = 0;
  if (CK_RV rv = f->C_GetSlotList(CK_TRUE, nullptr, &count); rv != CKR_OK) {
    return Failed("C_GetSlotList", rv);
  }
  std::vector<CK_SLOT_ID> slots(count);
  if (CK_RV rv = f->C_GetSlotList(CK_TRUE, slots.data(), &count); rv != CKR_OK) {
    return Failed("C_GetSlotList", rv);
  }
  slots.resize(count);
  std::vector<std::string> labels;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (f->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    std::string label = TrimLabel(info.label, sizeof(info.label));
    labels.push_back(label);
    if (!uri.token.empty() && label != uri.token) continue;
    CK_SESSION_HANDLE session = 0;
    if (CK_RV rv = f->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr,
                                    &session);
        rv != CKR_OK) {
      return Failed("C_OpenSession", rv);
    }
    if (!uri.pin.empty()) {
      CK_RV rv = f->C_Login(session, CKU_USER,
                            reinterpret_cast<CK_UTF8CHAR_PTR>(const_cast<char*>(uri.pin.data())),
                            uri.pin.size());
      if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
        f->C_CloseSession(session);
        if (rv == CKR_PIN_INCORRECT) {
          return absl::UnauthenticatedError(
              absl::StrCat("PKCS#11 token '", label, "': wrong PIN"));
        }
        return Failed("C_Login", rv);
      }
    }
    return std::shared_ptr<Pkcs11Session>(new Pkcs11Session(module, session, label));
  }
  return absl::NotFoundError(absl::StrCat("no initialized PKCS#11 token labelled '", uri.token,
                                          "' in module ", uri.module_path, " (tokens: ",
                                          labels.empty() ? "none" : absl::StrJoin(labels, ", "),
                                          ")"));
}

Pkcs11Session::~Pkcs11Session() { module_->functions->C_CloseSession(session_); }

absl::Status Pkcs11Session::GenerateKeyPair(const Pkcs11Uri& uri, TokenKeyType type) {
  if (absl::StatusOr<uint64_t> existing = FindKey(uri, true); existing.ok()) {
    return absl::AlreadyExistsError(
        absl::StrCat("token '", token_label_, "' already holds key ", uri.KeyUri()));
  }
  std::lock_guard<std::mutex> lock(mu_);
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  const bool ed = type == TokenKeyType::kEd25519;
  CK_KEY_TYPE key_type = ed ? CKK_EC_EDWARDS : CKK_EC;
  CK_MECHANISM mechanism{ed ? CKM_EC_EDWARDS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, nullptr, 0};
  void* params = const_cast<unsigned char*>(ed ? kEd25519Params : kP256Params);
  CK_ULONG params_size = ed ? sizeof(kEd25519Params) : sizeof(kP256Params);
  void* label = const_cast<char*>(uri.object.data());
  void* id = const_cast<char*>(uri.id.data());
  std::vector<CK_ATTRIBUTE> pub = {
      {CKA_TOKEN, &yes, sizeof(yes)},          {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_EC_PARAMS, params, params_size},    {CKA_VERIFY, &yes, sizeof(yes)},
      {CKA_LABEL, label, uri.object.size()},
  };
  std::vector<CK_ATTRIBUTE> priv = {
      {CKA_TOKEN, &yes, sizeof(yes)},       {CKA_KEY_TYPE, &key_type, sizeof(key_type)},
      {CKA_PRIVATE, &yes, sizeof(yes)},     {CKA_SENSITIVE, &yes, sizeof(yes)},
      {CKA_EXTRACTABLE, &no, sizeof(no)},   {CKA_SIGN, &yes, sizeof(yes)},
      {CKA_DECRYPT, &no, sizeof(no)},       {CKA_DERIVE, &no, sizeof(no)},
      {CKA_LABEL, label, uri.object.size()},
  };
  if (!uri.id.empty()) {
    pub.push_back({CKA_ID, id, uri.id.size()});
    priv.push_back({CKA_ID, id, uri.id.size()});
  }
  CK_OBJECT_HANDLE pub_handle = 0, priv_handle = 0;
  if (CK_RV rv = module_->functions->C_GenerateKeyPair(session_, &mechanism, pub.data(), pub.size(),
                                                       priv.data(), priv.size(), &pub_handle,
                                                       &priv_handle);
      rv != CKR_OK) {
    return Failed(absl::StrCat("C_GenerateKeyPair (", ed ? "Ed25519" : "EC P-256", ") on token '",
                               token_label_, "'"),
                  rv);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Pkcs11Session::FindKey(const Pkcs11Uri& uri, bool private_key) {
  std::lock_guard<std::mutex> lock(mu_);
  CK_OBJECT_CLASS object_class = private_key ? CKO_PRIVATE_KEY : CKO_PUBLIC_KEY;
  std::vector<CK_ATTRIBUTE> query = {{CKA_CLASS, &object_class, sizeof(object_class)}};
  if (!uri.object.empty()) {
    query.push_back({CKA_LABEL, const_cast<char*>(uri.object.data()), uri.object.size()});
  }
  if (!uri.id.empty()) query.push_back({CKA_ID, const_cast<char*>(uri.id.data()), uri.id.size()});
  CK_FUNCTION_LIST_PTR f = module_->functions;
  if (CK_RV rv = f->C_FindObjectsInit(session_, query.data(), query.size()); rv != CKR_OK) {
    return Failed("C_FindObjectsInit", rv);
  }
  CK_OBJECT_HANDLE found[2];
  CK_ULONG count = 0;
  CK_RV rv = f->C_FindObjects(session_, found, 2, &count);
  f->C_FindObjectsFinal(session_);
  if (rv != CKR_OK) return Failed("C_FindObjects", rv);
  const char* kind = private_key ? "private" : "public";
  if (count == 0) {
    return absl::NotFoundError(
        absl::StrCat("token '", token_label_, "' holds no ", kind, " key ", uri.KeyUri()));
  }
  if (count > 1) {
    return absl::FailedPreconditionError(absl::StrCat("token '", token_label_, "' holds several ",
                                                      kind, " keys matching ", uri.KeyUri()));
  }
  return static_cast<uint64_t>(found[0]);
}

absl::StatusOr<std::string> Pkcs11Session::Attribute(uint64_t object, unsigned long type) {
  std::lock_guard<std::mutex> lock(mu_);
  CK_ATTRIBUTE attribute{type, nullptr, 0};
  CK_FUNCTION_LIST_PTR f = module_->functions;
  CK_RV rv = f->C_GetAttributeValue(session_, object, &attribute, 1);
  if (rv == CKR_ATTRIBUTE_SENSITIVE) {
    return absl::PermissionDeniedError(absl::StrCat(
        "token '", token_label_, "' refuses to reveal attribute 0x", absl::Hex(type),
        " (CKR_ATTRIBUTE_SENSITIVE)"));
  }
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || attribute.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return absl::NotFoundError(
        absl::StrCat("the object has no attribute 0x", absl::Hex(type), " (", RvName(rv), ")"));
  }
  if (rv != CKR_OK) return Failed("C_GetAttributeValue", rv);
  std::string value(attribute.ulValueLen, '\0');
  attribute.pValue = value.data();
  if (rv = f->C_GetAttributeValue(session_, object, &attribute, 1); rv != CKR_OK) {
    return Failed("C_GetAttributeValue", rv);
  }
  value.resize(attribute.ulValueLen);
  return value;
}

absl::StatusOr<std::string> Pkcs11Session::Sign(uint64_t key, unsigned long mechanism_type,
                                                std::string_view data) {
  std::lock_guard<std::mutex> lock(mu_);
  CK_FUNCTION_LIST_PTR f = module_->functions;
  CK_MECHANISM mechanism{mechanism_type, nullptr, 0};
  if (CK_RV rv = f->C_SignInit(session_, &mechanism, key); rv != CKR_OK) {
    return Failed(absl::StrCat("C_SignInit on token '", token_label_, "'"), rv);
  }
  auto* bytes = reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(data.data()));
  CK_ULONG length = 0;
  if (CK_RV rv = f->C_Sign(session_, bytes, data.size(), nullptr, &length); rv != CKR_OK) {
    return Failed("C_Sign", rv);
  }
  std::string signature(length, '\0');
  if (CK_RV rv = f->C_Sign(session_, bytes, data.size(),
                           reinterpret_cast<CK_BYTE_PTR>(signature.data()), &length);
      rv != CKR_OK) {
    return Failed("C_Sign", rv);
  }
  signature.resize(length);
  return signature;
}

}  // namespace fedge::models
