#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <gtest/gtest.h>

#include "brokers/net/test_certificate.hpp"
#include "net_test_support.hpp"

namespace backstop::net {
namespace {

TEST(TestCertificate, WritesAMatchingSelfSignedPairForLoopback) {
  testing::TempDir dir;
  const TestCertificate c = make_self_signed_certificate(dir.path() / "nested", "srv");
  ASSERT_TRUE(std::filesystem::exists(c.cert_file));
  ASSERT_TRUE(std::filesystem::exists(c.key_file));
  const auto key_perms = std::filesystem::status(c.key_file).permissions();
  EXPECT_EQ(key_perms & std::filesystem::perms::others_read, std::filesystem::perms::none);

  BIO* cb = BIO_new_mem_buf(c.cert_pem.data(), static_cast<int>(c.cert_pem.size()));
  X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
  BIO_free(cb);
  ASSERT_NE(cert, nullptr);
  BIO* kb = BIO_new_mem_buf(c.key_pem.data(), static_cast<int>(c.key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  ASSERT_NE(key, nullptr);

  EXPECT_EQ(X509_check_private_key(cert, key), 1);
  EXPECT_EQ(X509_verify(cert, key), 1);  // self-signed
  EXPECT_EQ(X509_check_ip_asc(cert, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_host(cert, "localhost", 0, 0, nullptr), 1);
  EXPECT_NE(X509_check_host(cert, "example.com", 0, 0, nullptr), 1);

  // Two certificates are never the same (pin tests rely on it).
  const TestCertificate other = make_self_signed_certificate(dir.path(), "other");
  EXPECT_NE(other.cert_pem, c.cert_pem);
  X509_free(cert);
  EVP_PKEY_free(key);
}

}  // namespace
}  // namespace backstop::net
