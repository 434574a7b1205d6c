#include "broker/metrics_server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "broker/log.h"

namespace zchat {
namespace {

constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// libmicrohttpd's request callback. Requests carry no body worth reading: a
// GET is answered on the first call.
MHD_Result OnRequest(void* cls, MHD_Connection* connection, const char* url,
                     const char* method, const char* /*version*/,
                     const char* /*upload_data*/, size_t* upload_data_size,
                     void** /*req_cls*/) {
  *upload_data_size = 0;
  MetricsServer::Page page =
      static_cast<MetricsServer*>(cls)->Serve(method, url);
  MHD_Response* response = MHD_create_response_from_buffer(
      page.body.size(), page.body.data(), MHD_RESPMEM_MUST_COPY);
  if (!response) return MHD_NO;
  MHD_add_response_header(
      response, MHD_HTTP_HEADER_CONTENT_TYPE,
      page.status == MHD_HTTP_OK ? kContentType : "text/plain; charset=utf-8");
  if (page.status == MHD_HTTP_METHOD_NOT_ALLOWED) {
    MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  }
  const MHD_Result queued =
      MHD_queue_response(connection, page.status, response);
  MHD_destroy_response(response);
  return queued;
}

// "HOST:PORT" or "[HOST]:PORT" as a socket address.
bool ParseBind(const std::string& bind, sockaddr_storage* addr, bool* ipv6,
               std::string* why) {
  std::string host;
  std::string port;
  if (!bind.empty() && bind.front() == '[') {
    const size_t close = bind.find("]:");
    if (close == std::string::npos) {
      *why = "expected [IPv6]:PORT";
      return false;
    }
    host = bind.substr(1, close - 1);
    port = bind.substr(close + 2);
    *ipv6 = true;
  } else {
    const size_t colon = bind.rfind(':');
    if (colon == std::string::npos) {
      *why = "expected HOST:PORT, e.g. 127.0.0.1:9100";
      return false;
    }
    host = bind.substr(0, colon);
    port = bind.substr(colon + 1);
    *ipv6 = false;
  }
  char* end = nullptr;
  const long number = std::strtol(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || number < 0 || number > 65535) {
    *why = "the port must be a number from 0 to 65535";
    return false;
  }
  std::memset(addr, 0, sizeof *addr);
  if (*ipv6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(addr);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(number));
    if (inet_pton(AF_INET6, host.c_str(), &a6->sin6_addr) != 1) {
      *why = "'" + host + "' is not an IPv6 address";
      return false;
    }
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(addr);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(number));
    if (host == "localhost") host = "127.0.0.1";
    if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) {
      *why = "'" + host + "' is not an IPv4 address";
      return false;
    }
  }
  return true;
}

}  // namespace

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& bind, const Metrics& metrics, std::string db_path) {
  sockaddr_storage addr;
  bool ipv6 = false;
  std::string why;
  if (!ParseBind(bind, &addr, &ipv6, &why)) {
    return Status(ErrorCode::kInvalidArgument,
                  "--metrics-bind " + bind + ": " + why);
  }
  std::unique_ptr<MetricsServer> server(
      new MetricsServer(metrics, std::move(db_path)));
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
  if (ipv6) flags |= MHD_USE_IPv6;
  server->daemon_ = MHD_start_daemon(
      flags, 0, nullptr, nullptr, &OnRequest, server.get(),
      MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&addr),
      // A scrape is one small request: a few connections at a time, and
      // idle ones closed, keep the endpoint from costing descriptors.
      MHD_OPTION_CONNECTION_LIMIT, 16u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
      MHD_OPTION_END);
  if (!server->daemon_) {
    return Status(ErrorCode::kInvalidArgument,
                  "--metrics-bind " + bind +
                      ": cannot listen there (address in use, or not this "
                      "machine's)");
  }
  const MHD_DaemonInfo* info =
      MHD_get_daemon_info(server->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  const unsigned port = info ? info->port : 0;
  char host[INET6_ADDRSTRLEN] = {};
  if (ipv6) {
    inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr,
              host, sizeof host);
    server->url_ = "http://[" + std::string(host) +
                   "]:" + std::to_string(port) + "/metrics";
  } else {
    inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&addr)->sin_addr, host,
              sizeof host);
    server->url_ =
        "http://" + std::string(host) + ":" + std::to_string(port) + "/metrics";
  }
  return server;
}

MetricsServer::~MetricsServer() {
  if (daemon_) MHD_stop_daemon(daemon_);
}

std::optional<StoreTotals> MetricsServer::ReadTotals() {
  std::lock_guard<std::mutex> lock(store_mutex_);
  if (!store_) {
    StoreOptions options;
    options.read_only = true;
    Result<std::unique_ptr<Store>> opened = Store::Open(db_path_, options);
    if (!opened.ok()) {
      if (!warned_) {
        Log(LogLevel::kWarn,
            "metrics: cannot read the database: " + opened.status().ToString());
        warned_ = true;
      }
      return std::nullopt;
    }
    store_ = std::move(*opened);
  }
  Result<StoreTotals> totals = store_->Totals();
  if (!totals.ok()) {
    if (!warned_) {
      Log(LogLevel::kWarn, "metrics: cannot count the database's rows: " +
                               totals.status().ToString());
      warned_ = true;
    }
    store_.reset();  // try a fresh connection next time
    return std::nullopt;
  }
  return *totals;
}

MetricsServer::Page MetricsServer::Serve(std::string_view method,
                                         std::string_view url) {
  if (method != "GET" && method != "HEAD") {
    return {MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n"};
  }
  if (url != "/metrics") {
    return {MHD_HTTP_NOT_FOUND, "zchat-broker metrics are at /metrics\n"};
  }
  return {MHD_HTTP_OK, RenderMetrics(metrics_, ReadTotals())};
}

}  // namespace zchat
