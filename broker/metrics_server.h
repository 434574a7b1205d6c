// MetricsServer: the opt-in HTTP endpoint (--metrics-bind HOST:PORT) that
// serves Metrics in the Prometheus text format at /metrics. It runs on
// libmicrohttpd's own thread, never on the chat socket, and reads the
// database through a second, read-only connection (what is committed), so
// a scrape never waits for the broker's loop nor holds it up.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "broker/metrics.h"
#include "broker/store.h"
#include "messages/status.h"

struct MHD_Daemon;

namespace zchat {

class MetricsServer {
 public:
  // Listens on `bind`: "HOST:PORT" with an IPv4 address, or "[IPv6]:PORT";
  // port 0 picks a free one. `db_path` is the broker's database (already
  // open and migrated). `metrics` must outlive the server.
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& bind,
                                                      const Metrics& metrics,
                                                      std::string db_path);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // http://HOST:PORT/metrics, with the port actually bound.
  const std::string& url() const { return url_; }

  // The answer to one HTTP request: GET (or HEAD) /metrics is the
  // metrics page; other paths are 404, other methods 405.
  struct Page {
    unsigned status = 200;
    std::string body;
  };
  Page Serve(std::string_view method, std::string_view url);

 private:
  MetricsServer(const Metrics& metrics, std::string db_path)
      : metrics_(metrics), db_path_(std::move(db_path)) {}
  // The database's totals, or nullopt (logged once) if they cannot be read.
  std::optional<StoreTotals> ReadTotals();

  const Metrics& metrics_;
  const std::string db_path_;
  std::mutex store_mutex_;
  std::unique_ptr<Store> store_;  // opened on the first scrape
  bool warned_ = false;
  MHD_Daemon* daemon_ = nullptr;
  std::string url_;
};

}  // namespace zchat
