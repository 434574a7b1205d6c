// One handler per request type (handle_<request>.cpp), and the finishers of
// the requests that wait for password hashing. Each checks everything before
// its first write, writes through the store, replies and pushes through its
// Request, and returns an Verdict; the dispatcher (dispatcher.h) routes
// frames to them.
#pragma once

#include "broker/context.h"
#include "broker/hash_pool.h"
#include "broker/verdict.h"
#include "messages/messages.h"

namespace zchat {

Verdict HandleCreateAccount(Context& ctx, Request& req, const Message& m);
Verdict FinishCreateAccount(Context& ctx, Request& req,
                            const PendingHash& pending,
                            const HashResult& result);
Verdict HandleLoginRequest(Context& ctx, Request& req, const Message& m);
Verdict FinishLoginRequest(Context& ctx, Request& req,
                           const PendingHash& pending,
                           const HashResult& result);
Verdict HandleLogout(Context& ctx, Request& req, const Message& m);
Verdict HandleListAccounts(Context& ctx, Request& req, const Message& m);
Verdict HandleSendMessage(Context& ctx, Request& req, const Message& m);
Verdict HandleFetchMessages(Context& ctx, Request& req, const Message& m);
Verdict HandleMessageReceipt(Context& ctx, Request& req, const Message& m);
Verdict HandleDeletionRequest(Context& ctx, Request& req, const Message& m);
Verdict HandlePing(Context& ctx, Request& req, const Message& m);
Verdict HandleNoticeReceipt(Context& ctx, Request& req, const Message& m);
Verdict HandleFetchNotices(Context& ctx, Request& req, const Message& m);

}  // namespace zchat
