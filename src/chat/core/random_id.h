// Random identifiers: store epochs, node ids, the epoch a publish offers Redis. Not secrets (tokens
// are ops/auth's business): unique enough that two processes or two starts never meet.
#pragma once

#include <cstddef>
#include <string>

namespace chat {

// `digits` lowercase hex digits from this thread's generator (seeded once per thread by the OS).
std::string random_hex(size_t digits);

}  // namespace chat
