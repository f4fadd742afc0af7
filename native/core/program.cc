// Decoding of the compiled door program (docs/MATCHER.md §6).
#include "program.h"

namespace knockd {

std::shared_ptr<const Program> Program::decode(const uint32_t* words, size_t n, std::string* error) {
  (void)words;
  (void)n;
  if (error) *error = "not implemented";
  return nullptr;
}

}  // namespace knockd
