// TempDir: a fresh directory under the system temp dir, removed with it.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace zchat::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "zchat-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const {
    return (std::filesystem::path(path_) / name).string();
  }

 private:
  std::string path_;
};

}  // namespace zchat::testing
