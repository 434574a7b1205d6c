// One handler per request type (handle_<request>.cpp), and the finishers of
// the requests that wait for password hashing. Each checks everything before
// its first write, writes through the store, replies and pushes through its
// Request, and returns an Outcome; the dispatcher (dispatcher.h) routes
// frames to them.
#pragma once

#include "broker/context.h"
#include "broker/hash_pool.h"
#include "broker/outcome.h"
#include "messages/messages.h"

namespace zchat {

Outcome HandleCreateAccount(Context& ctx, Request& req, const Message& m);
Outcome FinishCreateAccount(Context& ctx, Request& req,
                            const PendingHash& pending,
                            const HashResult& result);
Outcome HandleLoginRequest(Context& ctx, Request& req, const Message& m);
Outcome FinishLoginRequest(Context& ctx, Request& req,
                           const PendingHash& pending,
                           const HashResult& result);
Outcome HandleLogout(Context& ctx, Request& req, const Message& m);
Outcome HandleListAccounts(Context& ctx, Request& req, const Message& m);
Outcome HandleSendMessage(Context& ctx, Request& req, const Message& m);
Outcome HandleFetchMessages(Context& ctx, Request& req, const Message& m);
Outcome HandleMessageReceipt(Context& ctx, Request& req, const Message& m);
Outcome HandleDeletionRequest(Context& ctx, Request& req, const Message& m);
Outcome HandlePing(Context& ctx, Request& req, const Message& m);

}  // namespace zchat
