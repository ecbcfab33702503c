#include "emulators/tradestation/self_signed_certificate.hpp"

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <utility>

#include "core/error.hpp"

namespace backstop::tradestation_emulator {

namespace {
void ensure(bool ok, const char* what) {
  if (!ok) throw Error(std::string("self-signed certificate: ") + what + " failed");
}
}  // namespace

SelfSignedCertificate make_self_signed_certificate() {
  SelfSignedCertificate out;
  out.key.reset(EVP_EC_gen("prime256v1"));
  ensure(out.key != nullptr, "EVP_EC_gen");
  out.cert.reset(X509_new());
  ensure(out.cert != nullptr, "X509_new");
  X509* x = out.cert.get();
  ensure(X509_set_version(x, 2) == 1, "X509_set_version");
  ensure(ASN1_INTEGER_set(X509_get_serialNumber(x), 1) == 1, "serial");
  X509_gmtime_adj(X509_getm_notBefore(x), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x), 30L * 24 * 3600);
  ensure(X509_set_pubkey(x, out.key.get()) == 1, "X509_set_pubkey");
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(
      name, "O", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>("Backstop TradeStation emulator"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("localhost"), -1, -1, 0);
  ensure(X509_set_issuer_name(x, name) == 1, "X509_set_issuer_name");

  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  const std::pair<int, const char*> extensions[] = {
      {NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1"}, {NID_ext_key_usage, "serverAuth"}};
  for (const auto& [nid, value] : extensions) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    ensure(ext != nullptr, "X509V3_EXT_conf_nid");
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  ensure(X509_sign(x, out.key.get(), EVP_sha256()) > 0, "X509_sign");

  std::unique_ptr<BIO, int (*)(BIO*)> bio(BIO_new(BIO_s_mem()), BIO_free);
  ensure(bio && PEM_write_bio_X509(bio.get(), x) == 1, "PEM_write_bio_X509");
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  out.pem.assign(data, static_cast<std::size_t>(len));
  return out;
}

}  // namespace backstop::tradestation_emulator
