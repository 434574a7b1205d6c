// Metrics: histogram buckets, the Prometheus text the endpoint serves, and
// the HTTP server's flag checking and routes (served for real over
// loopback by tests/python/test_metrics.py).
#include "broker/metrics.h"

#include <gtest/gtest.h>

#include "broker/metrics_server.h"
#include "tests/support/temp_dir.h"

namespace zchat {
namespace {

TEST(HistogramTest, BucketsAreCumulativeAndBoundsInclusive) {
  Histogram h({1, 10});
  h.Observe(0.5);
  h.Observe(1);  // on the bound: in that bucket
  h.Observe(5);
  h.Observe(50);
  EXPECT_EQ(h.cumulative(0), 2u);
  EXPECT_EQ(h.cumulative(1), 3u);
  EXPECT_EQ(h.cumulative(2), 4u);  // +Inf
  EXPECT_EQ(h.count(), 4u);
  EXPECT_DOUBLE_EQ(h.sum(), 56.5);
}

TEST(RenderMetricsTest, WritesTypedSamplesWithLabels) {
  Metrics m;
  m.CountRequest(static_cast<uint64_t>(MessageType::kSendMessage),
                 ErrorCode::kOk);
  m.CountRequest(static_cast<uint64_t>(MessageType::kSendMessage),
                 ErrorCode::kUnknownRecipient);
  m.CountRequest(0, ErrorCode::kMalformed);
  m.messages[static_cast<size_t>(MessageEvent::kDeliveredLive)].Add(3);
  m.sessions.Set(7);
  m.commit_seconds.Observe(0.002);
  const std::string text = RenderMetrics(m, StoreTotals{4, 5, 6});
  for (const char* line : {
           "# TYPE zchat_requests_total counter\n",
           "zchat_requests_total{type=\"SEND_MESSAGE\",outcome=\"ok\"} 1\n",
           "zchat_requests_total{type=\"SEND_MESSAGE\",outcome=\"unknown_"
           "recipient\"} 1\n",
           "zchat_requests_total{type=\"undecoded\",outcome=\"malformed\"} 1\n",
           "zchat_messages_delivered_live_total 3\n",
           "zchat_sessions 7\n",
           "zchat_accounts 4\n",
           "zchat_queue_depth 5\n",
           "zchat_notices_pending 6\n",
           "# TYPE zchat_commit_seconds histogram\n",
           "zchat_commit_seconds_bucket{le=\"0.001\"} 0\n",
           "zchat_commit_seconds_bucket{le=\"0.0025\"} 1\n",
           "zchat_commit_seconds_bucket{le=\"+Inf\"} 1\n",
           "zchat_commit_seconds_sum 0.002\n",
           "zchat_commit_seconds_count 1\n",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << "missing: " << line;
  }
  // Types never seen are not listed; without the store's totals, neither
  // are its gauges.
  EXPECT_EQ(text.find("type=\"PING\""), std::string::npos);
  EXPECT_EQ(RenderMetrics(m, std::nullopt).find("zchat_queue_depth"),
            std::string::npos);
}

TEST(MetricsServerTest, RefusesBadBindAddresses) {
  Metrics m;
  for (const char* bind : {"9100", "127.0.0.1:port", "127.0.0.1:70000",
                           "nohost:9100", "[::1:9100", "[127.0.0.1]:9100"}) {
    auto server = MetricsServer::Start(bind, m, "unused.db");
    ASSERT_FALSE(server.ok()) << bind;
    EXPECT_EQ(server.status().code(), ErrorCode::kInvalidArgument) << bind;
    EXPECT_NE(server.status().detail().find(bind), std::string::npos);
  }
}

TEST(MetricsServerTest, ServesMetricsOnlyAtTheMetricsPath) {
  testing::TempDir dir;
  const std::string db = dir.File("m.db");
  ASSERT_TRUE(Store::Open(db, StoreOptions{}).ok());
  Metrics m;
  auto server = MetricsServer::Start("127.0.0.1:0", m, db);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  EXPECT_EQ((*server)->url().rfind("http://127.0.0.1:", 0), 0u);
  EXPECT_EQ((*server)->url().find(":0/"), std::string::npos)
      << "the bound port, not 0";
  MetricsServer::Page page = (*server)->Serve("GET", "/metrics");
  EXPECT_EQ(page.status, 200u);
  EXPECT_NE(page.body.find("zchat_queue_depth 0\n"), std::string::npos);
  EXPECT_EQ((*server)->Serve("GET", "/").status, 404u);
  EXPECT_EQ((*server)->Serve("POST", "/metrics").status, 405u);
}

}  // namespace
}  // namespace zchat
