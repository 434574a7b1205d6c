// A program built against an installed zchat: constructs a client (the
// ZeroMQ connect is asynchronous, so no broker is needed) and uses the
// messages library, then prints a line.
#include <zchat/client/client.h>
#include <zchat/messages/utf8.h>

#include <iostream>

int main() {
  zchat::ClientOptions options;
  options.endpoint = "tcp://127.0.0.1:1";
  zchat::Client client(options);
  if (!zchat::IsValidUtf8("h\xc3\xa9llo")) return 1;
  std::cout << "zchat client for " << options.endpoint << '\n';
  return 0;
}
