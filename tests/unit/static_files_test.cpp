// http::StaticFiles: request paths decoded and checked; nothing outside the web root is served.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "http/static_files.h"

namespace {

namespace fs = std::filesystem;

TEST(StaticFilesPath, RequestTargetsBecomeRelativePaths) {
  EXPECT_EQ(http::file_path_of("/"), "index.html");
  EXPECT_EQ(http::file_path_of("/app.js"), "app.js");
  EXPECT_EQ(http::file_path_of("/app.js?v=3#x"), "app.js");
  EXPECT_EQ(http::file_path_of("/a%20b.css"), "a b.css");
  EXPECT_EQ(http::file_path_of("/img/"), "img/index.html");
  EXPECT_EQ(http::file_path_of("/img/logo.png"), "img/logo.png");
}

TEST(StaticFilesPath, TraversalAndOddPathsAreRefused) {
  for (const char* bad : {"", "app.js", "/..", "/../etc/passwd", "/a/../../etc/passwd", "/%2e%2e/etc/passwd",
                          "/%2E%2E%2Fetc%2Fpasswd", "/.%2e/x", "/./app.js", "/a//b", "/%00", "/a%5c..%5cb", "/a\\b",
                          "/%", "/%4", "/%zz"}) {
    EXPECT_FALSE(http::file_path_of(bad)) << bad;
  }
  // Decoded once: a double-encoded dot-dot is a strange file name, not a way up.
  EXPECT_EQ(http::file_path_of("/%252e%252e/x"), "%2e%2e/x");
}

TEST(StaticFilesDirectory, ServesWhatIsInsideAndNothingOutsideEvenThroughSymlinks) {
  fs::path base = fs::temp_directory_path() / ("static_files_test." + std::to_string(::getpid()));
  fs::remove_all(base);
  fs::create_directories(base / "root" / "sub");
  std::ofstream(base / "root" / "index.html") << "<h1>in</h1>";
  std::ofstream(base / "root" / "sub" / "a.css") << "a{}";
  std::ofstream(base / "secret.txt") << "outside";
  fs::create_symlink(base / "secret.txt", base / "root" / "link.txt");
  fs::create_directory_symlink(base, base / "root" / "up");

  auto files = http::StaticFiles::directory((base / "root").string());
  auto index = files.find("/");
  ASSERT_TRUE(index);
  EXPECT_EQ(*index->body, "<h1>in</h1>");
  EXPECT_EQ(index->content_type, "text/html; charset=utf-8");
  EXPECT_FALSE(index->etag.empty());
  auto css = files.find("/sub/a.css");
  ASSERT_TRUE(css);
  EXPECT_EQ(css->content_type, "text/css; charset=utf-8");
  EXPECT_FALSE(files.find("/link.txt")) << "a symlink to a file outside the root";
  EXPECT_FALSE(files.find("/up/secret.txt")) << "a symlink to a directory outside the root";
  EXPECT_FALSE(files.find("/../secret.txt"));
  EXPECT_FALSE(files.find("/%2e%2e/secret.txt"));
  EXPECT_FALSE(files.find("/sub")) << "a directory is not a file";
  EXPECT_FALSE(files.find("/missing.js"));
  EXPECT_THROW(http::StaticFiles::directory((base / "nope").string()), std::runtime_error);
  fs::remove_all(base);
}

}  // namespace
