// safetensors reader (mmap + full validation on open) and atomic writer. The refusals mirror
// huggingface/safetensors' tensor.rs (error names in brackets in every message) plus two it
// lacks: duplicate keys (serde keeps the last silently) and NUL bytes in the header (nlohmann's
// lexer treats '\0' as end of input, so "{}\0garbage" would otherwise parse).
#include "io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"

namespace peft {
namespace io {

namespace {

using Json = nlohmann::ordered_json;  // ordered: entries() keeps the header's key order

constexpr uint64_t kMaxHeader = 100000000;  // the reference's MAX_HEADER_SIZE
constexpr const char* kMetadataKey = "__metadata__";

struct DtypeSize {
  const char* name;
  size_t size;
};
constexpr DtypeSize kDtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"I16", 2}, {"U16", 2}, {"F16", 2}, {"BF16", 2},
    {"I32", 4},  {"U32", 4}, {"F32", 4},  {"F64", 8}, {"I64", 8}, {"U64", 8},
};

// 0 when unknown, so the reader can report the refusal with its own context.
size_t dtype_size_or_zero(const std::string& dtype) {
  for (const auto& d : kDtypes)
    if (dtype == d.name) return d.size;
  return 0;
}

// Strict UTF-8 (as Rust's str::from_utf8): no overlong forms, surrogates or code points past
// U+10FFFF. Returns the offset of the first bad byte, or n when the whole range is valid.
size_t utf8_invalid_at(const unsigned char* s, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4, cp = c & 0x07;
    } else {
      return i;
    }
    if (n - i < len) return i;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    const bool overlong = (len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
    i += len;
  }
  return n;
}

bool valid_utf8(const std::string& s) {
  return utf8_invalid_at(reinterpret_cast<const unsigned char*>(s.data()), s.size()) == s.size();
}

// Exact non-negative 64-bit integer; floats (even 2.0), strings and negatives are refused, as
// serde refuses them for usize. nlohmann stores integers past UINT64_MAX as floats, so those
// are refused here too.
bool json_u64(const Json& j, uint64_t* out) {
  if (j.is_number_unsigned()) {
    *out = j.get<uint64_t>();
    return true;
  }
  if (j.is_number_integer() && j.get<int64_t>() >= 0) {  // "-0"
    *out = static_cast<uint64_t>(j.get<int64_t>());
    return true;
  }
  return false;
}

std::string u64_pair(uint64_t a, uint64_t b) {
  return "[" + std::to_string(a) + ", " + std::to_string(b) + "]";
}

// a * b, false on 64-bit overflow.
bool checked_mul(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

#define ST_REFUSE(path, err, ...) PEFT_ERROR("safetensors '", path, "': [", err, "] ", __VA_ARGS__)

// Parses one tensor's {"dtype", "shape", "data_offsets"}. Unknown extra fields are ignored, as
// the reference's serde struct ignores them.
SafetensorsEntry parse_entry(const std::string& path, const std::string& name, const Json& v) {
  const char* E = "InvalidHeaderDeserialization";
  if (!v.is_object()) ST_REFUSE(path, E, "tensor '", name, "': expected an object, got ", v.dump());
  SafetensorsEntry e;
  e.name = name;

  auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string()) ST_REFUSE(path, E, "tensor '", name, "': missing or non-string \"dtype\"");
  e.dtype = dt->get<std::string>();
  if (dtype_size_or_zero(e.dtype) == 0) ST_REFUSE(path, E, "tensor '", name, "': unsupported dtype '", e.dtype, "'");

  auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array()) ST_REFUSE(path, E, "tensor '", name, "': missing or non-array \"shape\"");
  for (size_t i = 0; i < sh->size(); ++i) {
    uint64_t d = 0;
    if (!json_u64((*sh)[i], &d))
      ST_REFUSE(path, E, "tensor '", name, "': shape[", i, "] = ", (*sh)[i].dump(), " is not a non-negative integer");
    // Our shapes are int64; the reference's usize would take [0, 2^63], which nobody writes.
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      ST_REFUSE(path, "ValidationOverflow", "tensor '", name, "': shape[", i, "] = ", d, " does not fit int64");
    e.shape.push_back(static_cast<int64_t>(d));
  }

  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2)
    ST_REFUSE(path, E, "tensor '", name, "': \"data_offsets\" must be an array [begin, end]");
  if (!json_u64((*off)[0], &e.begin) || !json_u64((*off)[1], &e.end))
    ST_REFUSE(path, E, "tensor '", name, "': data_offsets ", off->dump(), " are not non-negative integers");
  return e;
}

// Parses the JSON header, refusing duplicate keys at any depth (tensor names, fields of a
// tensor, metadata keys); serde only refuses duplicate struct fields.
Json parse_header(const std::string& path, const char* h, uint64_t n) {
  const auto* u = reinterpret_cast<const unsigned char*>(h);
  const size_t bad = utf8_invalid_at(u, n);
  if (bad != n) ST_REFUSE(path, "InvalidHeader", "header is not valid UTF-8 (byte ", bad, " of the header)");
  if (const void* nul = std::memchr(h, '\0', n))
    ST_REFUSE(path, "InvalidHeaderDeserialization", "header contains a NUL byte at offset ",
              static_cast<const char*>(nul) - h, " (NUL padding is not JSON whitespace)");

  std::vector<std::set<std::string>> open_objects;
  std::string dup_key;
  int dup_depth = -1;
  auto cb = [&](int depth, Json::parse_event_t ev, Json& parsed) {
    using E = Json::parse_event_t;
    if (ev == E::object_start) {
      open_objects.emplace_back();
    } else if (ev == E::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (ev == E::key && !open_objects.empty() && dup_depth < 0) {
      if (!open_objects.back().insert(parsed.get<std::string>()).second) {
        dup_key = parsed.get<std::string>();
        dup_depth = depth;
      }
    }
    return true;
  };

  Json j;
  try {
    j = Json::parse(h, h + n, cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const nlohmann::json::exception& ex) {
    ST_REFUSE(path, "InvalidHeaderDeserialization", "header is not valid JSON: ", ex.what());
  }
  if (dup_depth == 1 && dup_key != kMetadataKey)
    ST_REFUSE(path, "InvalidHeaderDeserialization", "duplicate tensor name '", dup_key, "'");
  if (dup_depth >= 0)
    ST_REFUSE(path, "InvalidHeaderDeserialization", "duplicate key '", dup_key, "' at depth ", dup_depth);
  if (!j.is_object()) ST_REFUSE(path, "InvalidHeaderDeserialization", "header is not a JSON object");
  return j;
}

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  const size_t s = dtype_size_or_zero(dtype);
  PEFT_CHECK(s != 0, "safetensors: unsupported dtype '", dtype,
             "' (supported: BOOL U8 I8 I16 U16 F16 BF16 I32 U32 F32 F64 I64 U64)");
  return s;
}

// ---- reader

SafetensorsFile::SafetensorsFile(SafetensorsFile&& o) noexcept
    : path_(std::move(o.path_)),
      entries_(std::move(o.entries_)),
      index_(std::move(o.index_)),
      metadata_(std::move(o.metadata_)),
      map_(std::exchange(o.map_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      header_len_(std::exchange(o.header_len_, 0)) {}

SafetensorsFile& SafetensorsFile::operator=(SafetensorsFile&& o) noexcept {
  if (this != &o) {
    unmap();
    path_ = std::move(o.path_);
    entries_ = std::move(o.entries_);
    index_ = std::move(o.index_);
    metadata_ = std::move(o.metadata_);
    map_ = std::exchange(o.map_, nullptr);
    size_ = std::exchange(o.size_, 0);
    header_len_ = std::exchange(o.header_len_, 0);
  }
  return *this;
}

SafetensorsFile::~SafetensorsFile() { unmap(); }

void SafetensorsFile::unmap() noexcept {
  if (map_ != nullptr) ::munmap(const_cast<uint8_t*>(map_), static_cast<size_t>(size_));
  map_ = nullptr;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;  // its destructor unmaps if validation below throws
  f.path_ = path;

  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  PEFT_CHECK(fd >= 0, "safetensors '", path, "': cannot open: ", std::strerror(errno));
  struct stat st {};
  const bool stat_ok = ::fstat(fd, &st) == 0;
  const int stat_err = errno;
  if (!stat_ok || !S_ISREG(st.st_mode)) {
    ::close(fd);
    PEFT_ERROR("safetensors '", path, "': ", stat_ok ? "not a regular file" : std::strerror(stat_err));
  }
  f.size_ = static_cast<uint64_t>(st.st_size);
  // Checked before mapping: mmap of an empty file fails, and the length prefix must exist.
  if (f.size_ < 8) {
    ::close(fd);
    ST_REFUSE(path, "HeaderTooSmall", "file is ", f.size_, " bytes, shorter than the 8-byte header length");
  }
  void* m = ::mmap(nullptr, static_cast<size_t>(f.size_), PROT_READ, MAP_PRIVATE, fd, 0);
  const int map_err = errno;
  ::close(fd);  // the mapping keeps the file alive
  PEFT_CHECK(m != MAP_FAILED, "safetensors '", path, "': mmap of ", f.size_, " bytes failed: ", std::strerror(map_err));
  f.map_ = static_cast<const uint8_t*>(m);

  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | f.map_[i];  // little-endian, whatever the host
  if (n > kMaxHeader) ST_REFUSE(path, "HeaderTooLarge", "header length ", n, " exceeds ", kMaxHeader);
  // n <= 1e8, so 8 + n cannot overflow; the check that matters is against the file size.
  if (8 + n > f.size_)
    ST_REFUSE(path, "InvalidHeaderLength", "header length ", n, " runs past the end of the ", f.size_, "-byte file");
  f.header_len_ = n;

  const Json j = parse_header(path, reinterpret_cast<const char*>(f.map_ + 8), n);
  for (const auto& kv : j.items()) {
    if (kv.key() == kMetadataKey) {
      if (!kv.value().is_object())
        ST_REFUSE(path, "InvalidHeaderDeserialization", "\"__metadata__\" must be an object of strings, got ",
                  kv.value().dump());
      for (const auto& m_kv : kv.value().items()) {
        if (!m_kv.value().is_string())
          ST_REFUSE(path, "InvalidHeaderDeserialization", "__metadata__['", m_kv.key(),
                    "'] is not a string: ", m_kv.value().dump());
        f.metadata_[m_kv.key()] = m_kv.value().get<std::string>();
      }
      continue;
    }
    f.index_.emplace(kv.key(), f.entries_.size());
    f.entries_.push_back(parse_entry(path, kv.key(), kv.value()));
  }

  // Same walk as the reference's validate(): by offset, each tensor must start where the
  // previous ended (the first at 0), then its byte count must match its shape and dtype.
  std::vector<size_t> order(f.entries_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const auto& x = f.entries_[a];
    const auto& y = f.entries_[b];
    return std::tie(x.begin, x.end) < std::tie(y.begin, y.end);
  });
  uint64_t start = 0;
  for (size_t i : order) {
    const SafetensorsEntry& e = f.entries_[i];
    if (e.begin != start || e.end < e.begin)
      ST_REFUSE(path, "InvalidOffset", "tensor '", e.name, "' has data_offsets ", u64_pair(e.begin, e.end),
                e.end < e.begin ? " (end < begin)" : "", "; expected it to begin at ", start,
                start == 0 ? " (the first tensor)" : " where the previous tensor ends");
    start = e.end;
    uint64_t numel = 1;
    for (int64_t d : e.shape)  // left fold, as the reference's try_fold(checked_mul)
      if (!checked_mul(numel, static_cast<uint64_t>(d), &numel))
        ST_REFUSE(path, "ValidationOverflow", "tensor '", e.name, "': the product of shape ", shape_str(e.shape),
                  " overflows 64 bits");
    uint64_t nbytes = 0;
    if (!checked_mul(numel, dtype_size_or_zero(e.dtype), &nbytes))
      ST_REFUSE(path, "ValidationOverflow", "tensor '", e.name, "': ", numel, " elements of ", e.dtype,
                " overflow 64 bits of bytes");
    if (e.end - e.begin != nbytes)
      ST_REFUSE(path, "TensorInvalidInfo", "tensor '", e.name, "' (", e.dtype, ", shape ", shape_str(e.shape),
                ") needs ", nbytes, " bytes but data_offsets ", u64_pair(e.begin, e.end), " span ",
                e.end - e.begin);
  }
  // Subtraction, not 8 + n + start, so a huge `start` cannot wrap around.
  if (start != f.size_ - 8 - n)
    ST_REFUSE(path, "MetadataIncompleteBuffer", "tensors end at data offset ", start, " but the data block is ",
              f.size_ - 8 - n, " bytes (file ", f.size_, " bytes, header ", n, ")",
              start < f.size_ - 8 - n ? ": trailing bytes" : ": truncated data");
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

const SafetensorsEntry& SafetensorsFile::at(const std::string& name) const {
  const SafetensorsEntry* e = find(name);
  PEFT_CHECK(e != nullptr, "safetensors '", path_, "': no tensor named '", name, "' (", entries_.size(),
             " tensors in the file)");
  return *e;
}

const uint8_t* SafetensorsFile::data(const SafetensorsEntry& e) const {
  // Only entries of this file are meaningful; a foreign entry would point anywhere.
  PEFT_CHECK(map_ != nullptr, "safetensors '", path_, "': data() on a moved-from file");
  PEFT_CHECK(e.begin <= e.end && e.end <= size_ - 8 - header_len_, "safetensors '", path_, "': entry '", e.name,
             "' with data_offsets ", u64_pair(e.begin, e.end), " is outside this file's data block");
  return map_ + 8 + header_len_ + e.begin;
}

// ---- writer

void write_safetensors(const std::string& path, const std::vector<SafetensorsTensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Everything is checked before the disk is touched, so a bad call leaves `path` as it was.
  std::vector<size_t> sizes(tensors.size());
  std::set<std::string> names;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const SafetensorsTensorRef& t = tensors[i];
    PEFT_CHECK(t.name != kMetadataKey, "write_safetensors '", path,
               "': \"__metadata__\" is reserved, not a tensor name");
    PEFT_CHECK(valid_utf8(t.name), "write_safetensors '", path, "': tensor name #", i, " is not valid UTF-8");
    PEFT_CHECK(names.insert(t.name).second, "write_safetensors '", path, "': duplicate tensor name '", t.name, "'");
    sizes[i] = dtype_size_or_zero(t.dtype);
    PEFT_CHECK(sizes[i] != 0, "write_safetensors '", path, "': tensor '", t.name, "': unsupported dtype '", t.dtype,
               "'");
    uint64_t numel = 1;
    for (int64_t d : t.shape) {
      PEFT_CHECK(d >= 0, "write_safetensors '", path, "': tensor '", t.name, "' has negative dimension in shape ",
                 shape_str(t.shape));
      PEFT_CHECK(checked_mul(numel, static_cast<uint64_t>(d), &numel), "write_safetensors '", path, "': tensor '",
                 t.name, "': shape ", shape_str(t.shape), " overflows 64 bits");
    }
    uint64_t nbytes = 0;
    PEFT_CHECK(checked_mul(numel, sizes[i], &nbytes), "write_safetensors '", path, "': tensor '", t.name,
               "': byte size overflows 64 bits");
    PEFT_CHECK(nbytes == t.nbytes, "write_safetensors '", path, "': tensor '", t.name, "' (", t.dtype, ", shape ",
               shape_str(t.shape), ") needs ", nbytes, " bytes, got nbytes = ", t.nbytes);
    PEFT_CHECK(t.data != nullptr || nbytes == 0, "write_safetensors '", path, "': tensor '", t.name,
               "' has null data");
  }
  for (const auto& kv : metadata)
    PEFT_CHECK(valid_utf8(kv.first) && valid_utf8(kv.second), "write_safetensors '", path,
               "': metadata entry is not valid UTF-8");

  // Descending dtype size, then name: with an 8-aligned data block every tensor is aligned.
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (sizes[a] != sizes[b]) return sizes[a] > sizes[b];
    return tensors[a].name < tensors[b].name;
  });

  // Same compact form and key order as the reference's serializer: __metadata__ first (only
  // when there is some), then tensors in data order, fields dtype / shape / data_offsets.
  Json header = Json::object();
  if (!metadata.empty()) {
    Json m = Json::object();
    for (const auto& kv : metadata) m[kv.first] = kv.second;
    header[kMetadataKey] = std::move(m);
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const SafetensorsTensorRef& t = tensors[i];
    Json info = Json::object();
    info["dtype"] = t.dtype;
    info["shape"] = t.shape;
    info["data_offsets"] = {offset, offset + t.nbytes};
    header[t.name] = std::move(info);
    offset += t.nbytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  PEFT_CHECK(text.size() <= kMaxHeader, "write_safetensors '", path, "': header of ", text.size(),
             " bytes exceeds the ", kMaxHeader, "-byte limit readers enforce");

  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
  AtomicFileWriter out(path, "write_safetensors");
  out.write(len, 8);
  out.write(text.data(), text.size());
  for (size_t i : order)
    if (tensors[i].nbytes > 0) out.write(tensors[i].data, static_cast<size_t>(tensors[i].nbytes));
  out.commit();
}

}  // namespace io
}  // namespace peft
