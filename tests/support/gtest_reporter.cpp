// Linked into every GoogleTest binary that uses the test support library
// (as an object library, so that this initializer always runs): each
// problem a RawClient reports is a failure of the running test.
#include <gtest/gtest.h>

#include "tests/support/raw_client.h"

namespace zchat::testing {
namespace {

const bool kInstalled = [] {
  SetProblemReporter([](const std::string& what) { ADD_FAILURE() << what; });
  return true;
}();

}  // namespace
}  // namespace zchat::testing
