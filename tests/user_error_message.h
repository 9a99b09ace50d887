// The message of the kimi::UserError a call throws, for tests that check one-line errors.
#pragma once

#include <functional>
#include <string>

#include "core/tensor/error.h"

namespace kimi::test_util {

// "(no UserError)" when f returns, so a missing error fails the test's find() on its message.
inline std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const UserError& e) {
    return e.what();
  }
  return "(no UserError)";
}

}  // namespace kimi::test_util
