#pragma once
// A throw-away self-signed certificate for `--tls`, generated in memory at start-up with OpenSSL.
// Kept inside the emulator folder: brokers/net/test_certificate.hpp had no implementation yet
// when this was written. It can replace this file once it lands (it writes PEM files instead).
#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>
#include <string>

namespace backstop::tradestation_emulator {

struct SelfSignedCertificate {
  std::unique_ptr<X509, void (*)(X509*)> cert{nullptr, X509_free};
  std::unique_ptr<EVP_PKEY, void (*)(EVP_PKEY*)> key{nullptr, EVP_PKEY_free};
  std::string pem;  // the certificate, for clients that pin it
};

// CN=localhost with subjectAltName DNS:localhost, IP:127.0.0.1, valid for 30 days, EC P-256.
// Throws Error when OpenSSL fails.
SelfSignedCertificate make_self_signed_certificate();

}  // namespace backstop::tradestation_emulator
