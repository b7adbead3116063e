// Extended grapheme clusters (io/unicode.h's grapheme_starts): the rules of Unicode's UAX #29, as
// the Rust crate unicode-segmentation applies them, since tokenizers' Precompiled normalizer looks
// the text up cluster by cluster. Tables: io/grapheme_tables.inc (io/make_grapheme_tables.py).
#include <algorithm>

#include "io/unicode.h"

namespace peft {
namespace io {
namespace unicode {
namespace {

// Grapheme_Cluster_Break, with the Other code points that rules GB9c and GB11 look for split out.
enum class G : unsigned char {
  Other, CR, LF, Control, Extend, ZWJ, Regional_Indicator, Prepend, SpacingMark, L, V, T, LV, LVT, ExtPict,
  InCB_Consonant
};
struct GraphemeRange {
  char32_t lo, hi;
  G cls;
};
struct CodeRange {
  char32_t lo, hi;
};

#include "io/grapheme_tables.inc"

G class_of(char32_t c) {
  if (c >= 0x20 && c < 0x7F) return G::Other;  // the common case, no search
  const GraphemeRange* end = kGraphemeClass + sizeof(kGraphemeClass) / sizeof(kGraphemeClass[0]);
  const GraphemeRange* it =
      std::upper_bound(kGraphemeClass, end, c, [](char32_t v, const GraphemeRange& r) { return v < r.lo; });
  return it != kGraphemeClass && c <= (it - 1)->hi ? (it - 1)->cls : G::Other;
}

template <size_t N>
bool in(const CodeRange (&table)[N], char32_t c) {
  const CodeRange* it = std::upper_bound(table, table + N, c, [](char32_t v, const CodeRange& r) { return v < r.lo; });
  return it != table && c <= (it - 1)->hi;
}

bool control_like(G g) { return g == G::Control || g == G::CR || g == G::LF; }

// Whether there is a boundary between cps[i - 1] and cps[i] (0 < i < size).
bool is_break(const std::u32string& cps, const std::vector<G>& cls, size_t i) {
  const G a = cls[i - 1], b = cls[i];
  if (a == G::CR && b == G::LF) return false;                      // GB3
  if (control_like(a) || control_like(b)) return true;            // GB4, GB5
  if (a == G::L && (b == G::L || b == G::V || b == G::LV || b == G::LVT)) return false;  // GB6
  if ((a == G::LV || a == G::V) && (b == G::V || b == G::T)) return false;              // GB7
  if ((a == G::LVT || a == G::T) && b == G::T) return false;                            // GB8
  if (b == G::Extend || b == G::ZWJ || b == G::SpacingMark || a == G::Prepend) return false;  // GB9, 9a, 9b
  if (b == G::InCB_Consonant) {  // GB9c: Consonant [Extend Linker]* Linker [Extend Linker]* × Consonant
    size_t linkers = 0, k = i;
    while (k > 0 && (in(kInCBLinker, cps[k - 1]) || in(kInCBExtend, cps[k - 1]))) linkers += in(kInCBLinker, cps[--k]);
    if (linkers > 0 && k > 0 && cls[k - 1] == G::InCB_Consonant) return false;
  }
  if (a == G::ZWJ && b == G::ExtPict) {  // GB11: ExtPict Extend* ZWJ × ExtPict
    size_t k = i - 1;
    while (k > 0 && cls[k - 1] == G::Extend) --k;
    if (k > 0 && cls[k - 1] == G::ExtPict) return false;
  }
  if (a == G::Regional_Indicator && b == G::Regional_Indicator) {  // GB12, GB13: pairs of flags
    size_t run = 0;
    for (size_t k = i; k > 0 && cls[k - 1] == G::Regional_Indicator; --k) ++run;
    return run % 2 == 0;
  }
  return true;  // GB999
}

}  // namespace

std::vector<size_t> grapheme_starts(const std::u32string& cps) {
  std::vector<G> cls(cps.size());
  for (size_t i = 0; i < cps.size(); ++i) cls[i] = class_of(cps[i]);
  std::vector<size_t> starts;
  for (size_t i = 0; i < cps.size(); ++i)
    if (i == 0 || is_break(cps, cls, i)) starts.push_back(i);
  return starts;
}

}  // namespace unicode
}  // namespace io
}  // namespace peft
