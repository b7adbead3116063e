// safetensors reader / writer: round trips, the exact byte layout Python's safetensors writes,
// one test per refusal of spec/safetensors.md (each on a hand-made bad file), and the writer's
// atomicity (old or new content, never a temp file left, bad calls leave the target untouched).
#include "io/safetensors.h"

#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"

namespace fs = std::filesystem;
using peft::io::SafetensorsFile;
using peft::io::SafetensorsTensorRef;
using peft::io::write_safetensors;
using Catch::Matchers::Contains;

namespace {

// One directory per test process, removed when the process ends.
struct ScratchRoot {
  fs::path dir = fs::temp_directory_path() / ("peft_st_" + std::to_string(::getpid()));
  ScratchRoot() { fs::create_directories(dir); }
  ~ScratchRoot() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

// A fresh, empty subdirectory, so a test can list exactly what it left behind.
fs::path fresh_dir(const std::string& name) {
  static ScratchRoot root;
  fs::path d = root.dir / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return s;
}

// A file the way Python's safetensors lays it out: length prefix, header, data. `pad` adds the
// spaces Python adds; readers must not depend on them.
std::string st_bytes(const std::string& header, const std::string& data = "", bool pad = false) {
  std::string h = header;
  if (pad) h.append((8 - h.size() % 8) % 8, ' ');
  return le64(h.size()) + h + data;
}

std::string write_file(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  f.close();
  REQUIRE(f.good());
  return p.string();
}

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

std::string open_error(const std::string& path) {
  try {
    SafetensorsFile::open(path);
  } catch (const peft::Error& e) {
    return e.what();
  }
  FAIL("open('" << path << "') was accepted but should have been refused");
  return "";
}

// Writes `bytes` to a new file, opens it, and checks the refusal names the file, the reference's
// error in brackets and (when given) the offending key or value.
void check_refused(const std::string& bytes, const std::string& error, const std::string& detail = "") {
  static std::atomic<int> counter{0};
  static const fs::path dir = fresh_dir("bad");
  const std::string path = write_file(dir / ("bad_" + std::to_string(counter++) + ".safetensors"), bytes);
  const std::string msg = open_error(path);
  INFO("message: " << msg);
  CHECK_THAT(msg, Contains("[" + error + "]"));
  CHECK_THAT(msg, Contains(path));
  if (!detail.empty()) CHECK_THAT(msg, Contains(detail));
}

// A header with one tensor entry `name` whose JSON body is given verbatim.
std::string one_tensor(const std::string& body, const std::string& data = "", const std::string& name = "t") {
  return st_bytes("{\"" + name + "\":" + body + "}", data);
}

std::string bytes_of(const void* p, size_t n) { return std::string(static_cast<const char*>(p), n); }

std::vector<std::string> temp_leftovers(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) out.push_back(e.path().string());
  return out;
}

}  // namespace

// ---- round trip and layout

TEST_CASE("round trip keeps names, dtypes, shapes, bytes and metadata", "[io][safetensors]") {
  const fs::path dir = fresh_dir("roundtrip");
  const std::vector<double> f64 = {1.5, -2.25};
  const std::vector<float> f32 = {1, 2, 3, 4, 5, 6};
  const std::vector<int64_t> i64 = {-1, 0, 1LL << 40};
  const std::vector<uint16_t> bf16 = {0x3F80, 0x4000, 0xC040, 0x0000, 0x7F80};
  const std::vector<uint16_t> f16 = {0x3C00, 0x4000, 0x4200};
  const int32_t i32_scalar = -7;
  const std::vector<uint8_t> u8 = {1, 2, 3, 4, 5, 6, 7};
  const std::vector<uint8_t> boolean = {1, 0, 1};
  const std::vector<int16_t> i16 = {-300, 300};
  const std::vector<uint32_t> u32 = {0xDEADBEEF};
  const std::vector<uint64_t> u64 = {~0ULL};
  const std::vector<int8_t> i8 = {-128, 127};
  const std::vector<SafetensorsTensorRef> tensors = {
      {"w.f64", "F64", {2}, f64.data(), 16},
      {"w.f32", "F32", {2, 3}, f32.data(), 24},
      {"idx", "I64", {3}, i64.data(), 24},
      {"h.bf16", "BF16", {5}, bf16.data(), 10},
      {"h.f16", "F16", {1, 3}, f16.data(), 6},
      {"scalar", "I32", {}, &i32_scalar, 4},
      {"bytes", "U8", {7}, u8.data(), 7},
      {"mask", "BOOL", {3}, boolean.data(), 3},
      {"empty", "F32", {0, 4}, nullptr, 0},
      {"s16", "I16", {2}, i16.data(), 4},
      {"u32", "U32", {1}, u32.data(), 4},
      {"u64", "U64", {1}, u64.data(), 8},
      {"i8", "I8", {2}, i8.data(), 2},
      {"u16", "U16", {0}, nullptr, 0},
  };
  const std::map<std::string, std::string> meta = {{"format", "pt"}, {"note", "h\xc3\xa9llo \"quoted\"\n"}};
  const std::string path = (dir / "rt.safetensors").string();
  write_safetensors(path, tensors, meta);

  const SafetensorsFile f = SafetensorsFile::open(path);
  CHECK(f.path() == path);
  CHECK(f.metadata() == meta);
  REQUIRE(f.entries().size() == tensors.size());
  for (const auto& t : tensors) {
    INFO(t.name);
    const auto& e = f.at(t.name);
    CHECK(e.name == t.name);
    CHECK(e.dtype == t.dtype);
    CHECK(e.shape == t.shape);
    CHECK(e.end - e.begin == t.nbytes);
    if (t.nbytes > 0) CHECK(bytes_of(f.data(e), t.nbytes) == bytes_of(t.data, t.nbytes));
  }
  CHECK(f.find("missing") == nullptr);
  CHECK(f.find("scalar")->shape.empty());
}

TEST_CASE("writer pads the header to 8 bytes and orders tensors by descending dtype size then name",
          "[io][safetensors]") {
  const fs::path dir = fresh_dir("layout");
  const uint8_t b[3] = {1, 2, 3};
  const float f[2] = {1, 2};
  const double d[1] = {3};
  const uint16_t h[1] = {0x3C00};
  const std::string path = (dir / "l.safetensors").string();
  write_safetensors(path, {{"a_u8", "U8", {3}, b, 3},
                           {"z_f32", "F32", {2}, f, 8},
                           {"b_f64", "F64", {1}, d, 8},
                           {"a_f32", "F32", {2}, f, 8},
                           {"c_bf16", "BF16", {1}, h, 2},
                           {"a_i64", "I64", {1}, d, 8}});
  const std::string raw = read_file(path);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<uint8_t>(raw[i]);
  CHECK(n % 8 == 0);
  CHECK(raw[8] == '{');
  const std::string header = raw.substr(8, n);
  CHECK(header.find_last_not_of(' ') == header.rfind('}'));  // only spaces after the object

  const SafetensorsFile file = SafetensorsFile::open(path);
  std::vector<std::string> names;
  for (const auto& e : file.entries()) names.push_back(e.name);
  CHECK(names == std::vector<std::string>{"a_i64", "b_f64", "a_f32", "z_f32", "c_bf16", "a_u8"});
  uint64_t expect_begin = 0;
  for (const auto& e : file.entries()) {
    INFO(e.name);
    CHECK(e.begin == expect_begin);  // contiguous, in header order
    CHECK((8 + n + e.begin) % peft::io::safetensors_dtype_size(e.dtype) == 0);
    CHECK(reinterpret_cast<uintptr_t>(file.data(e)) % peft::io::safetensors_dtype_size(e.dtype) == 0);
    expect_begin = e.end;
  }
}

TEST_CASE("writer output is byte-identical to Python's safetensors", "[io][safetensors]") {
  const fs::path dir = fresh_dir("python_bytes");
  const std::string path = (dir / "p.safetensors").string();
  SECTION("no tensors, no metadata: {} and six spaces") {
    write_safetensors(path, {});
    CHECK(read_file(path) == le64(8) + "{}      ");
  }
  SECTION("metadata only") {
    write_safetensors(path, {}, {{"framework", "pt"}});
    CHECK(read_file(path) == le64(40) + "{\"__metadata__\":{\"framework\":\"pt\"}}     ");
  }
  SECTION("one F32 tensor of shape [1, 1, 2, 3]") {
    const float v[6] = {0, 1, 2, 3, 4, 5};
    write_safetensors(path, {{"attn0", "F32", {1, 1, 2, 3}, v, 24}});
    const std::string header = "{\"attn0\":{\"dtype\":\"F32\",\"shape\":[1,1,2,3],\"data_offsets\":[0,24]}}       ";
    CHECK(read_file(path) == le64(72) + header + bytes_of(v, 24));
  }
  SECTION("PEFT adapter: __metadata__ first, then tensors by name") {
    const float a[4] = {1, 2, 3, 4};
    const float bb[2] = {5, 6};
    write_safetensors(path, {{"lora_B", "F32", {2, 1}, bb, 8}, {"lora_A", "F32", {1, 4}, a, 16}}, {{"format", "pt"}});
    const std::string expected = st_bytes(
        "{\"__metadata__\":{\"format\":\"pt\"},\"lora_A\":{\"dtype\":\"F32\",\"shape\":[1,4],\"data_offsets\":[0,16]},"
        "\"lora_B\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[16,24]}}",
        bytes_of(a, 16) + bytes_of(bb, 8), /*pad=*/true);
    CHECK(read_file(path) == expected);
  }
}

TEST_CASE("reader accepts a hand-written file and keeps the header's key order", "[io][safetensors]") {
  const fs::path dir = fresh_dir("handmade");
  // Keys not in offset order, JSON whitespace around and inside, no padding to 8.
  const float w[4] = {1, 2, 3, 4};
  const int64_t idx[2] = {7, 9};
  const std::string header =
      " \n{ \"w\" : {\"dtype\":\"F32\", \"shape\":[2,2], \"data_offsets\":[16,32]},\n"
      "  \"__metadata__\": {\"format\": \"pt\"},\t\"idx\": {\"shape\": [2], \"dtype\": \"I64\", "
      "\"data_offsets\": [0, 16]} }\r\n";
  const std::string path = write_file(dir / "h.safetensors", st_bytes(header, bytes_of(idx, 16) + bytes_of(w, 16)));
  const SafetensorsFile f = SafetensorsFile::open(path);
  REQUIRE(f.entries().size() == 2);
  CHECK(f.entries()[0].name == "w");
  CHECK(f.entries()[1].name == "idx");
  CHECK(f.metadata().at("format") == "pt");
  const auto& we = f.at("w");
  CHECK(we.begin == 16);
  CHECK(we.end == 32);
  CHECK(we.shape == std::vector<int64_t>{2, 2});
  CHECK(bytes_of(f.data(we), 16) == bytes_of(w, 16));
  CHECK(bytes_of(f.data(f.at("idx")), 16) == bytes_of(idx, 16));
  try {
    f.at("nope");
    FAIL("at() of a missing name did not throw");
  } catch (const peft::Error& e) {
    CHECK_THAT(std::string(e.what()), Contains("nope") && Contains(path));
  }
}

TEST_CASE("a {} header with no data is a valid empty file", "[io][safetensors]") {
  const fs::path dir = fresh_dir("empty_ok");
  const SafetensorsFile f = SafetensorsFile::open(write_file(dir / "e.safetensors", st_bytes("{}")));
  CHECK(f.entries().empty());
  CHECK(f.metadata().empty());
  const SafetensorsFile g = SafetensorsFile::open(write_file(dir / "m.safetensors", st_bytes("{\"__metadata__\":{}}")));
  CHECK(g.entries().empty());
}

TEST_CASE("zero-size tensors and rank-0 scalars are legal, even at the end of the data", "[io][safetensors]") {
  const fs::path dir = fresh_dir("zero_size");
  const float s = 2.5f;
  const std::string header =
      "{\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]},"
      "\"z\":{\"dtype\":\"F64\",\"shape\":[3,0],\"data_offsets\":[4,4]},"
      "\"tail\":{\"dtype\":\"I8\",\"shape\":[0],\"data_offsets\":[4,4]}}";
  const SafetensorsFile f = SafetensorsFile::open(write_file(dir / "z.safetensors", st_bytes(header, bytes_of(&s, 4))));
  CHECK(f.at("s").shape.empty());
  CHECK(bytes_of(f.data(f.at("s")), 4) == bytes_of(&s, 4));
  CHECK(f.at("z").shape == std::vector<int64_t>{3, 0});
  CHECK(f.at("tail").begin == f.at("tail").end);
}

TEST_CASE("a moved SafetensorsFile keeps its mapping and data pointers", "[io][safetensors]") {
  const fs::path dir = fresh_dir("move");
  const float v[3] = {1, 2, 3};
  const std::string path = (dir / "m.safetensors").string();
  write_safetensors(path, {{"v", "F32", {3}, v, 12}});
  SafetensorsFile a = SafetensorsFile::open(path);
  const uint8_t* p = a.data(a.at("v"));
  SafetensorsFile b(std::move(a));
  CHECK(b.data(b.at("v")) == p);
  SafetensorsFile c = SafetensorsFile::open(path);
  c = std::move(b);
  CHECK(bytes_of(c.data(c.at("v")), 12) == bytes_of(v, 12));
}

TEST_CASE("safetensors_dtype_size knows the 13 supported dtypes and refuses others", "[io][safetensors]") {
  using peft::io::safetensors_dtype_size;
  CHECK(safetensors_dtype_size("BOOL") == 1);
  CHECK(safetensors_dtype_size("U8") == 1);
  CHECK(safetensors_dtype_size("I8") == 1);
  CHECK(safetensors_dtype_size("I16") == 2);
  CHECK(safetensors_dtype_size("U16") == 2);
  CHECK(safetensors_dtype_size("F16") == 2);
  CHECK(safetensors_dtype_size("BF16") == 2);
  CHECK(safetensors_dtype_size("I32") == 4);
  CHECK(safetensors_dtype_size("U32") == 4);
  CHECK(safetensors_dtype_size("F32") == 4);
  CHECK(safetensors_dtype_size("F64") == 8);
  CHECK(safetensors_dtype_size("I64") == 8);
  CHECK(safetensors_dtype_size("U64") == 8);
  CHECK_THROWS_WITH(safetensors_dtype_size("F8_E4M3"), Contains("unsupported dtype"));
  CHECK_THROWS_AS(safetensors_dtype_size("f32"), peft::Error);
}

// ---- refusals (spec/safetensors.md, one test per rule)

TEST_CASE("a file shorter than 8 bytes is refused [HeaderTooSmall]", "[io][safetensors]") {
  check_refused("", "HeaderTooSmall");
  check_refused(std::string("\x02\0\0\0\0\0\0", 7), "HeaderTooSmall");
}

TEST_CASE("a header length over 100,000,000 is refused [HeaderTooLarge]", "[io][safetensors]") {
  check_refused(le64(100000001) + "{}", "HeaderTooLarge", "100000001");
  check_refused(le64(~0ULL) + "{}", "HeaderTooLarge");
}

TEST_CASE("a header length past the end of the file is refused [InvalidHeaderLength]", "[io][safetensors]") {
  check_refused(le64(100) + "{}", "InvalidHeaderLength", "100");
  check_refused(le64(100000000) + "{}", "InvalidHeaderLength");
  check_refused(le64(3) + "{}", "InvalidHeaderLength");
}

TEST_CASE("a header that is not UTF-8 is refused [InvalidHeader]", "[io][safetensors]") {
  check_refused(st_bytes("{\"\xff\":{}}"), "InvalidHeader");
  check_refused(st_bytes("{\"\xc0\xaf\":{}}"), "InvalidHeader");      // overlong '/'
  check_refused(st_bytes("{\"\xed\xa0\x80\":{}}"), "InvalidHeader");  // surrogate
  check_refused(st_bytes("{\"\xe2\x82\":{}}"), "InvalidHeader");      // truncated sequence
  check_refused(st_bytes("{}\xf4\x90\x80\x80"), "InvalidHeader");     // past U+10FFFF
}

TEST_CASE("a header that is not a JSON object, or has trailing garbage, is refused", "[io][safetensors]") {
  check_refused(st_bytes(""), "InvalidHeaderDeserialization");  // zero-length header
  check_refused(st_bytes("{"), "InvalidHeaderDeserialization");
  check_refused(st_bytes("{\"t\":}"), "InvalidHeaderDeserialization");
  check_refused(st_bytes("{} x"), "InvalidHeaderDeserialization");
  check_refused(st_bytes("{}{}"), "InvalidHeaderDeserialization");
  check_refused(st_bytes("{}/*c*/"), "InvalidHeaderDeserialization");
  // nlohmann stops at a NUL byte as if the input ended there: NUL padding must still be refused.
  check_refused(st_bytes(std::string("{}\0\0\0\0\0\0", 8)), "InvalidHeaderDeserialization", "NUL");
  check_refused(st_bytes(std::string("{}\0junk", 7)), "InvalidHeaderDeserialization", "NUL");
  check_refused(st_bytes("[]"), "InvalidHeaderDeserialization", "not a JSON object");
  check_refused(st_bytes("\"{}\""), "InvalidHeaderDeserialization");
  check_refused(st_bytes("{\"t\":\"\\ud800\"}"), "InvalidHeaderDeserialization");  // lone surrogate escape
}

TEST_CASE("an unknown or unsupported dtype is refused", "[io][safetensors]") {
  check_refused(one_tensor(R"({"dtype":"F33","shape":[1],"data_offsets":[0,4]})", "1234"),
                "InvalidHeaderDeserialization", "F33");
  check_refused(one_tensor(R"({"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]})", "1"),
                "InvalidHeaderDeserialization", "unsupported dtype");
  check_refused(one_tensor(R"({"dtype":"f32","shape":[1],"data_offsets":[0,4]})", "1234"),
                "InvalidHeaderDeserialization", "f32");
  check_refused(one_tensor(R"({"dtype":4,"shape":[1],"data_offsets":[0,4]})", "1234"), "InvalidHeaderDeserialization");
}

TEST_CASE("negative, fractional or non-integer shapes and offsets are refused", "[io][safetensors]") {
  const char* bad_shapes[] = {"[-2]", "[2.0]", "[2.5]", "[1e0]", "[\"2\"]", "[null]", "[[2]]", "[true]", "2",
                              "[18446744073709551616]"};
  for (const char* s : bad_shapes) {
    INFO("shape " << s);
    check_refused(one_tensor(std::string(R"({"dtype":"U8","shape":)") + s + R"(,"data_offsets":[0,2]})", "12"),
                  "InvalidHeaderDeserialization", "'t'");
  }
  const char* bad_offsets[] = {"[-1,7]", "[0,8.0]", "[0,8.5]", "[0,8e0]", "[\"0\",8]", "[0]", "[0,4,8]",
                               "{\"0\":8}", "null", "[0,18446744073709551616]"};
  for (const char* o : bad_offsets) {
    INFO("data_offsets " << o);
    check_refused(one_tensor(std::string(R"({"dtype":"U8","shape":[8],"data_offsets":)") + o + "}", "12345678"),
                  "InvalidHeaderDeserialization", "'t'");
  }
}

TEST_CASE("a tensor entry that is not an object with dtype, shape and data_offsets is refused", "[io][safetensors]") {
  check_refused(one_tensor("[]"), "InvalidHeaderDeserialization", "'t'");
  check_refused(one_tensor("\"F32\""), "InvalidHeaderDeserialization");
  check_refused(one_tensor(R"({"shape":[1],"data_offsets":[0,1]})", "1"), "InvalidHeaderDeserialization", "dtype");
  check_refused(one_tensor(R"({"dtype":"U8","data_offsets":[0,1]})", "1"), "InvalidHeaderDeserialization", "shape");
  check_refused(one_tensor(R"({"dtype":"U8","shape":[1]})", "1"), "InvalidHeaderDeserialization", "data_offsets");
}

TEST_CASE("metadata must be an object of string values", "[io][safetensors]") {
  check_refused(st_bytes(R"({"__metadata__":{"format":1}})"), "InvalidHeaderDeserialization", "format");
  check_refused(st_bytes(R"({"__metadata__":{"a":"x","b":{"c":"d"}}})"), "InvalidHeaderDeserialization", "'b'");
  check_refused(st_bytes(R"({"__metadata__":{"a":null}})"), "InvalidHeaderDeserialization");
  check_refused(st_bytes(R"({"__metadata__":"pt"})"), "InvalidHeaderDeserialization", "__metadata__");
  check_refused(st_bytes(R"({"__metadata__":[]})"), "InvalidHeaderDeserialization", "__metadata__");
  check_refused(st_bytes(R"({"__metadata__":null})"), "InvalidHeaderDeserialization", "__metadata__");
}

TEST_CASE("duplicate tensor names are refused instead of keeping the last one", "[io][safetensors]") {
  const std::string t = R"({"dtype":"U8","shape":[4],"data_offsets":[0,4]})";
  check_refused(st_bytes("{\"w\":" + t + ",\"w\":" + t + "}", "1234"), "InvalidHeaderDeserialization",
                "duplicate tensor name 'w'");
  // Duplicates one level down are as ambiguous: a field of a tensor, a metadata key.
  check_refused(one_tensor(R"({"dtype":"U8","dtype":"I8","shape":[4],"data_offsets":[0,4]})", "1234"),
                "InvalidHeaderDeserialization", "duplicate key 'dtype'");
  check_refused(st_bytes(R"({"__metadata__":{"a":"1","a":"2"}})"), "InvalidHeaderDeserialization", "'a'");
  check_refused(st_bytes(R"({"__metadata__":{},"__metadata__":{}})"), "InvalidHeaderDeserialization",
                "duplicate key '__metadata__'");
}

TEST_CASE("gaps, overlaps, end before begin and a first tensor not at 0 are refused [InvalidOffset]",
          "[io][safetensors]") {
  // Gap: a ends at 4, b begins at 8.
  check_refused(st_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                         R"("b":{"dtype":"U8","shape":[8],"data_offsets":[8,16]}})",
                         std::string(16, 'x')),
                "InvalidOffset", "'b'");
  // Overlap: b begins inside a.
  check_refused(st_bytes(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
                         R"("b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]}})",
                         std::string(12, 'x')),
                "InvalidOffset", "'b'");
  check_refused(one_tensor(R"({"dtype":"U8","shape":[0],"data_offsets":[4,0]})", "1234"), "InvalidOffset",
                "end < begin");
  check_refused(one_tensor(R"({"dtype":"U8","shape":[4],"data_offsets":[4,8]})", "12345678"), "InvalidOffset",
                "[4, 8]");
}

TEST_CASE("ten tensors all at [0, 16] are refused [InvalidOffset]", "[io][safetensors]") {
  std::string header = "{";
  for (int i = 0; i < 10; ++i)
    header += std::string(i ? "," : "") + "\"t" + std::to_string(i) +
              R"(":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})";
  header += "}";
  check_refused(st_bytes(header, std::string(160, 'x')), "InvalidOffset", "[0, 16]");
  check_refused(st_bytes(header, std::string(16, 'x')), "InvalidOffset");
}

TEST_CASE("a shape or byte count overflowing 64 bits is refused [ValidationOverflow]", "[io][safetensors]") {
  // 2^32 * 2^32 = 2^64 elements.
  check_refused(one_tensor(R"({"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]})"),
                "ValidationOverflow", "'t'");
  // 2^62 elements fit, but 2^62 * 4 bytes do not.
  check_refused(one_tensor(R"({"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]})"),
                "ValidationOverflow", "'t'");
  // A dimension past int64 (our shape type) is refused too.
  check_refused(one_tensor(R"({"dtype":"U8","shape":[0,9223372036854775808],"data_offsets":[0,0]})"),
                "ValidationOverflow");
}

TEST_CASE("a byte span that is not numel times dtype size is refused [TensorInvalidInfo]", "[io][safetensors]") {
  check_refused(one_tensor(R"({"dtype":"F32","shape":[2,2],"data_offsets":[0,12]})", std::string(12, 'x')),
                "TensorInvalidInfo", "'t'");
  check_refused(one_tensor(R"({"dtype":"F32","shape":[],"data_offsets":[0,0]})"), "TensorInvalidInfo");
  check_refused(one_tensor(R"({"dtype":"BF16","shape":[0],"data_offsets":[0,2]})", "xx"), "TensorInvalidInfo");
}

TEST_CASE("truncated data or trailing bytes are refused [MetadataIncompleteBuffer]", "[io][safetensors]") {
  const std::string t = R"({"dtype":"F32","shape":[4],"data_offsets":[0,16]})";
  check_refused(one_tensor(t, std::string(15, 'x')), "MetadataIncompleteBuffer", "truncated");
  check_refused(one_tensor(t, std::string(17, 'x')), "MetadataIncompleteBuffer", "trailing");
  check_refused(st_bytes("{}", "x"), "MetadataIncompleteBuffer");
  // Offsets near 2^63: the end-of-file check must not wrap around.
  check_refused(one_tensor(R"({"dtype":"U8","shape":[9223372036854775807],"data_offsets":[0,9223372036854775807]})",
                           "x"),
                "MetadataIncompleteBuffer");
  check_refused(
      one_tensor(R"({"dtype":"F64","shape":[1152921504606846976],"data_offsets":[0,9223372036854775808]})"),
      "MetadataIncompleteBuffer");
}

TEST_CASE("a missing path or a directory is refused with its name", "[io][safetensors]") {
  const fs::path dir = fresh_dir("not_files");
  CHECK_THAT(open_error((dir / "absent.safetensors").string()), Contains("absent.safetensors"));
  CHECK_THAT(open_error(dir.string()), Contains(dir.string()));
}

// ---- writer: validation before the disk, atomic replacement

TEST_CASE("a write that fails validation leaves the existing file byte-identical", "[io][safetensors]") {
  const fs::path dir = fresh_dir("write_refused");
  const std::string path = (dir / "keep.safetensors").string();
  const float v[4] = {1, 2, 3, 4};
  write_safetensors(path, {{"v", "F32", {4}, v, 16}}, {{"format", "pt"}});
  const std::string before = read_file(path);

  CHECK_THROWS_WITH(write_safetensors(path, {{"a", "F32", {4}, v, 16}, {"a", "F32", {2}, v, 8}}),
                    Contains("duplicate tensor name 'a'"));
  CHECK_THROWS_WITH(write_safetensors(path, {{"a", "F32", {4}, v, 12}}), Contains("needs 16 bytes"));
  CHECK_THROWS_WITH(write_safetensors(path, {{"a", "F8_E4M3", {4}, v, 4}}), Contains("unsupported dtype"));
  CHECK_THROWS_WITH(write_safetensors(path, {{"a", "F32", {-1, 4}, v, 16}}), Contains("negative"));
  CHECK_THROWS_WITH(write_safetensors(path, {{"a", "U8", {1LL << 62, 8}, v, 0}}), Contains("overflows"));
  CHECK_THROWS_WITH(write_safetensors(path, {{"a", "F32", {4}, nullptr, 16}}), Contains("null data"));
  CHECK_THROWS_WITH(write_safetensors(path, {{"__metadata__", "F32", {4}, v, 16}}), Contains("reserved"));
  CHECK_THROWS_WITH(write_safetensors(path, {{"bad\xff", "F32", {4}, v, 16}}), Contains("UTF-8"));
  CHECK_THROWS_AS(write_safetensors(path, {}, {{"k", "\xc0\xaf"}}), peft::Error);

  CHECK(read_file(path) == before);
  CHECK(temp_leftovers(dir).empty());
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
}

TEST_CASE("writing over an existing file replaces it whole and leaves no temp file", "[io][safetensors]") {
  const fs::path dir = fresh_dir("atomic");
  const std::string path = (dir / "ckpt.safetensors").string();
  const std::vector<float> old_v(1000, 1.0f), new_v(3000, 2.0f);
  write_safetensors(path, {{"w", "F32", {1000}, old_v.data(), 4000}});
  const SafetensorsFile old_map = SafetensorsFile::open(path);

  write_safetensors(path, {{"w", "F32", {3000}, new_v.data(), 12000}});
  const SafetensorsFile now = SafetensorsFile::open(path);
  CHECK(now.at("w").shape == std::vector<int64_t>{3000});
  CHECK(bytes_of(now.data(now.at("w")), 12000) == bytes_of(new_v.data(), 12000));
  // A reader that mapped the old file still sees the old bytes: the writer never touches it.
  CHECK(bytes_of(old_map.data(old_map.at("w")), 4000) == bytes_of(old_v.data(), 4000));
  CHECK(temp_leftovers(dir).empty());
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
}

TEST_CASE("a reader racing a writer always sees the old or the new file, never a partial one",
          "[io][safetensors]") {
  const fs::path dir = fresh_dir("race");
  const std::string path = (dir / "r.safetensors").string();
  const std::vector<uint8_t> a(64 * 1024, 0xAA), b(96 * 1024, 0xBB);
  write_safetensors(path, {{"x", "U8", {static_cast<int64_t>(a.size())}, a.data(), a.size()}});
  std::atomic<bool> done{false};
  std::atomic<int> bad{0}, reads{0};
  std::thread reader([&] {
    while (!done.load()) {
      try {
        const SafetensorsFile f = SafetensorsFile::open(path);
        const auto& e = f.at("x");
        const uint8_t want = (e.end - e.begin == a.size()) ? 0xAA : 0xBB;
        const uint8_t* p = f.data(e);
        for (uint64_t i = 0; i < e.end - e.begin; ++i)
          if (p[i] != want) {
            ++bad;
            break;
          }
      } catch (const peft::Error&) {
        ++bad;
      }
      ++reads;
    }
  });
  for (int i = 0; i < 40; ++i) {
    const auto& v = (i % 2) ? a : b;
    write_safetensors(path, {{"x", "U8", {static_cast<int64_t>(v.size())}, v.data(), v.size()}});
  }
  while (reads.load() < 5) std::this_thread::yield();
  done = true;
  reader.join();
  CHECK(bad.load() == 0);
  CHECK(temp_leftovers(dir).empty());
}

TEST_CASE("a write into a missing directory fails without creating anything", "[io][safetensors]") {
  const fs::path dir = fresh_dir("no_dir");
  const float v[1] = {1};
  CHECK_THROWS_WITH(write_safetensors((dir / "sub" / "x.safetensors").string(), {{"v", "F32", {1}, v, 4}}),
                    Contains("temporary file"));
  CHECK(fs::is_empty(dir));
}
