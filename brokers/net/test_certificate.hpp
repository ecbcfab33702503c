#pragma once
// Self-signed TLS material generated at runtime, so tests and emulators serve TLS without a key
// ever being committed. The one generator of the project: the emulators use it too. Library target backstop_net_testing (not linked into production code).
//
//   auto cert = net::make_self_signed_certificate(tmp_dir);   // CN/SAN 127.0.0.1, localhost
//   server.use(cert.cert_file, cert.key_file);
//   client_options.tls.pinned_cert_file = cert.cert_file;     // or tls.ca_file = cert.cert_file
#include <filesystem>
#include <string>

namespace backstop::net {

struct SelfSignedPem {
  std::string cert_pem;  // self-signed, its own CA, SAN IP:127.0.0.1, IP:::1, DNS:localhost
  std::string key_pem;   // ECDSA P-256, unencrypted
};

// The certificate and key in memory (the emulators serve TLS from these without a temporary
// directory). `organization` names who serves it (the subject's O). Throws backstop::Error on any
// OpenSSL failure.
SelfSignedPem make_self_signed_pem(const std::string& organization = "Backstop test", int valid_days = 30);

struct TestCertificate {
  std::filesystem::path cert_file;  // PEM certificate (also usable as a CA file: it is its own CA)
  std::filesystem::path key_file;   // PEM private key, unencrypted, mode 0600
  std::string cert_pem;
  std::string key_pem;
};

// Writes <dir>/<stem>.crt and <dir>/<stem>.key (creating dir): an ECDSA P-256 key and a
// self-signed certificate valid from one hour ago for `valid_days`, with subjectAltName
// IP:127.0.0.1, IP:::1, DNS:localhost. Throws backstop::Error on any OpenSSL failure.
TestCertificate make_self_signed_certificate(const std::filesystem::path& dir,
                                             const std::string& stem = "backstop-test",
                                             int valid_days = 30);

}  // namespace backstop::net
