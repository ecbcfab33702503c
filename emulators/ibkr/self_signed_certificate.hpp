#pragma once
// The real Client Portal gateway serves HTTPS with a self-signed certificate (api-notes IBKR.md
// 1.0), so the emulator does too. The key and certificate are generated in memory at start-up:
// no key material is ever committed. (brokers/net/test_certificate.hpp writes files; this one
// stays in memory so the emulator needs no temporary directory.)
#include <string>

namespace backstop::ibkr_emulator {

struct CertificatePem {
  std::string certificate;  // PEM, self-signed, SAN IP:127.0.0.1, DNS:localhost
  std::string private_key;  // PEM, ECDSA P-256, unencrypted
};

// Throws backstop::Error on any OpenSSL failure.
CertificatePem make_self_signed_certificate(int valid_days = 30);

}  // namespace backstop::ibkr_emulator
