#include "serialize/npy.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <bit>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <string>

#include "absl/strings/str_cat.h"
#include "core/testing/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace subquad {
namespace {

using ::subquad::testing::StatusIs;
using ::testing::HasSubstr;

std::string TempDir() {
  const std::string dir = absl::StrCat(::testing::TempDir(), "npy_test_", getpid());
  std::filesystem::create_directories(dir);
  return dir;
}

void ExpectRoundTrip(const Tensor& t) {
  const std::string bytes = EncodeNpy(t.view());
  // The data starts at a multiple of 64 bytes, after a '\n'-terminated header.
  const size_t data_at = bytes.size() - static_cast<size_t>(t.byte_size());
  EXPECT_EQ(data_at % 64, 0u);
  EXPECT_EQ(bytes[data_at - 1], '\n');
  ASSERT_OK_AND_ASSIGN(Tensor back, DecodeNpy(bytes));
  EXPECT_TRUE(back.BitwiseEquals(t)) << t.type().ToString();
}

TEST(NpyTest, RoundTripsEveryDTypeAndRank) {
  const float nan_payload = std::bit_cast<float>(uint32_t{0x7fc01234});
  ExpectRoundTrip(Tensor::FromVector<float>(
      {2, 3}, std::vector<float>{nan_payload, -0.0f, 1.5f,
                                 std::numeric_limits<float>::infinity(),
                                 std::numeric_limits<float>::denorm_min(), 7}));
  ExpectRoundTrip(Tensor::FromVector<double>({4}, std::vector<double>{1, -2, 1e300, 0.1}));
  ExpectRoundTrip(Tensor::FromVector<int32_t>(
      {1, 2, 1}, std::vector<int32_t>{std::numeric_limits<int32_t>::min(), 9}));
  ExpectRoundTrip(Tensor::FromVector<int64_t>(
      {1}, std::vector<int64_t>{std::numeric_limits<int64_t>::max()}));
  ExpectRoundTrip(Tensor::Scalar<double>(3.5));
  ExpectRoundTrip(Tensor(DType::kF32, Shape{0, 5}));
  ExpectRoundTrip(Tensor(DType::kI64, Shape{1, 1, 1, 1, 1, 1, 1, 2}));
}

TEST(NpyTest, HeaderIsNumPys) {
  Tensor t = Tensor::FromVector<float>({2, 3}, std::vector<float>(6, 1.0f));
  const std::string bytes = EncodeNpy(t.view());
  ASSERT_EQ(bytes.size(), 128u + 24u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(static_cast<unsigned char>(bytes[8]) | (bytes[9] << 8), 118);
  EXPECT_EQ(bytes.substr(10, 59),
            "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
  EXPECT_EQ(bytes.substr(69, 59), std::string(58, ' ') + "\n");
  EXPECT_THAT(EncodeNpy(Tensor(DType::kI32, Shape{5}).view()),
              HasSubstr("'descr': '<i4', 'fortran_order': False, 'shape': (5,), }"));
  EXPECT_THAT(EncodeNpy(Tensor::Scalar<int64_t>(1).view()),
              HasSubstr("'descr': '<i8', 'fortran_order': False, 'shape': (), }"));
}

// A file as another writer might produce it: version 2.0, keys in another
// order, double quotes, no trailing comma, no padding.
TEST(NpyTest, ReadsOtherWritersHeaders) {
  const std::string dict = "{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<i4\"}\n";
  std::string bytes("\x93NUMPY\x02\x00", 8);
  const uint32_t len = static_cast<uint32_t>(dict.size());
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  bytes += dict;
  const int32_t values[2] = {-7, 8};
  bytes.append(reinterpret_cast<const char*>(values), sizeof(values));
  ASSERT_OK_AND_ASSIGN(Tensor t, DecodeNpy(bytes));
  EXPECT_EQ(t.type().ToString(), "i32[2]");
  EXPECT_EQ(t.data<int32_t>()[0], -7);
  EXPECT_EQ(t.data<int32_t>()[1], 8);
}

// A version-1.0 file with the given header dict and `data` data bytes.
std::string V1(const std::string& dict, size_t data) {
  std::string bytes("\x93NUMPY\x01\x00", 8);
  bytes.push_back(static_cast<char>(dict.size() & 0xff));
  bytes.push_back(static_cast<char>(dict.size() >> 8));
  return bytes + dict + std::string(data, '\0');
}

void ExpectInvalid(const std::string& bytes,
                   ::testing::Matcher<const std::string&> message) {
  EXPECT_THAT(DecodeNpy(bytes), StatusIs(absl::StatusCode::kInvalidArgument, message));
}

TEST(NpyTest, RejectsBadFiles) {
  ExpectInvalid("\x93NUMPY", "npy: 6 bytes is too short for a .npy file");
  ExpectInvalid("PK\x03\x04 zip file", "npy: not a .npy file (it does not start with \\x93NUMPY)");
  ExpectInvalid(std::string("\x93NUMPY\x03\x00\x00\x00\x00\x00", 12),
                "npy: format version 3.0 is not supported (1.0 and 2.0 are)");
  ExpectInvalid(std::string("\x93NUMPY\x01\x00\xff\x00{}", 12),
                "npy: header length 255 runs past the end of the 12-byte file");
  const std::string ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }\n";
  EXPECT_OK(DecodeNpy(V1(ok, 24)).status());
  ExpectInvalid(V1(ok, 20), "npy: data is 20 bytes; f32[2,3] needs 24");
  ExpectInvalid(V1(ok, 28), "npy: data is 28 bytes; f32[2,3] needs 24");
  ExpectInvalid(V1("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8),
                "npy: dtype '>f4' is big-endian; only little-endian ('<') data is "
                "supported");
  ExpectInvalid(V1("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16),
                "npy: dtype '<c8' is not supported (use '<f4', '<f8', '<i4' or "
                "'<i8')");
  ExpectInvalid(V1("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 2), }", 32),
                "npy: fortran_order is True; only C order is supported (save "
                "np.ascontiguousarray(a))");
  ExpectInvalid(V1("{'descr': '<f8', 'shape': (2, 2), }", 32),
                "npy: header: missing key 'fortran_order' in "
                "\"{'descr': '<f8', 'shape': (2, 2), }\"");
  ExpectInvalid(V1("{'descr': '<f8', 'descr': '<f4'}", 0),
                "npy: header: key 'descr' appears twice at character 25 of "
                "\"{'descr': '<f8', 'descr': '<f4'}\"");
  ExpectInvalid(V1("{'descr': '<f8', 'order': 'C'}", 0),
                "npy: header: unexpected key 'order' (a .npy header has descr, "
                "fortran_order and shape) at character 25 of \"{'descr': '<f8', "
                "'order': 'C'}\"");
  ExpectInvalid(V1("{'descr': '<f8' 'shape': ()}", 0),
                "npy: header: expected ',' at character 16 of \"{'descr': '<f8' "
                "'shape': ()}\"");
  ExpectInvalid(V1("{'descr': '<f8', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", 0),
                HasSubstr("npy: header: the shape has more than 8 dims at character"));
  ExpectInvalid(V1("{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999,)}", 0),
                HasSubstr("npy: header: a dim larger than 2^40 at character"));
  ExpectInvalid(V1("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}", 0),
                HasSubstr("npy: header: expected a non-negative integer at character 51"));
  // Dims in range whose product is not.
  ExpectInvalid(
      V1("{'descr': '<i4', 'fortran_order': False, 'shape': (1048576, 1048576, 1048576), }", 0),
      "npy: shape [1048576,1048576,1048576] has more than 1099511627776 elements");
}

TEST(NpyTest, FilesAndErrorsNameThePath) {
  const std::string dir = TempDir();
  const std::string path = dir + "/a.npy";
  Tensor t = Tensor::FromVector<double>({3}, std::vector<double>{1, 2, 3});
  ASSERT_OK(WriteNpy(path, t.view()));
  ASSERT_OK_AND_ASSIGN(Tensor back, ReadNpy(path));
  EXPECT_TRUE(back.BitwiseEquals(t));
  EXPECT_THAT(ReadNpy(path, 10),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat("'", path, "' is 152 bytes; the limit is 10")));
  EXPECT_THAT(ReadNpy(dir + "/missing.npy"),
              StatusIs(absl::StatusCode::kNotFound,
                       absl::StrCat("cannot open '", dir,
                                    "/missing.npy': No such file or directory")));
  std::FILE* f = std::fopen((dir + "/bad.npy").c_str(), "w");
  std::fputs("hello", f);
  std::fclose(f);
  EXPECT_THAT(ReadNpy(dir + "/bad.npy"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       absl::StrCat(dir, "/bad.npy: npy: 5 bytes is too short for "
                                         "a .npy file")));
  std::filesystem::remove_all(dir);
}

// Runs `script` with /usr/bin/python3; the exit code and stdout.
std::pair<int, std::string> Python(const std::string& script) {
  const std::string cmd = "/usr/bin/python3 -c '" + script + "' 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(NpyTest, NumPyReadsWhatWeWriteAndWeReadWhatItWrites) {
  if (access("/usr/bin/python3", X_OK) != 0 || Python("import numpy").first != 0) {
    GTEST_SKIP() << "python3 with numpy is not installed (Debian: python3-numpy); "
                    "skipping the NumPy interop check";
  }
  const std::string dir = TempDir();
  Tensor f = Tensor::FromVector<float>({2, 3}, std::vector<float>{0.5f, -1, 2, 3, 4, 1e-8f});
  Tensor l = Tensor::FromVector<int64_t>({2}, std::vector<int64_t>{-5, int64_t{1} << 40});
  ASSERT_OK(WriteNpy(dir + "/f.npy", f.view()));
  ASSERT_OK(WriteNpy(dir + "/l.npy", l.view()));
  ASSERT_OK(WriteNpy(dir + "/s.npy", Tensor::Scalar<double>(0.25).view()));
  auto [code, out] = Python(absl::StrCat(
      "import numpy as np\n"
      "for n in [\"f\", \"l\", \"s\"]:\n"
      "  a = np.load(\"", dir, "/\" + n + \".npy\")\n"
      "  print(a.dtype, a.shape, a.ravel().tolist())\n"
      "np.save(\"", dir, "/from_numpy.npy\", np.arange(12, dtype=np.float64).reshape(3, 4) / 8)\n"
      "np.save(\"", dir, "/i32.npy\", np.array([[1, -2]], dtype=np.int32))\n"));
  ASSERT_EQ(code, 0) << out;
  EXPECT_EQ(out,
            "float32 (2, 3) [0.5, -1.0, 2.0, 3.0, 4.0, 9.99999993922529e-09]\n"
            "int64 (2,) [-5, 1099511627776]\n"
            "float64 () [0.25]\n");
  ASSERT_OK_AND_ASSIGN(Tensor d, ReadNpy(dir + "/from_numpy.npy"));
  ASSERT_EQ(d.type().ToString(), "f64[3,4]");
  for (int i = 0; i < 12; ++i) EXPECT_EQ(d.data<double>()[i], i / 8.0);
  ASSERT_OK_AND_ASSIGN(Tensor i32, ReadNpy(dir + "/i32.npy"));
  ASSERT_EQ(i32.type().ToString(), "i32[1,2]");
  EXPECT_EQ(i32.data<int32_t>()[1], -2);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace subquad
