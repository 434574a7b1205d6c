// The interactive front end: a libedit prompt with line editing and history,
// polled beside the client's socket so that incoming messages appear the
// moment they arrive, printed above the line being typed.
#pragma once

#include "client/client.h"
#include "client/shell.h"

namespace zchat {

// Sets the character type from the environment, falling back to C.UTF-8
// (or another UTF-8 locale) when the environment's is not UTF-8: typing and
// editing text in any script needs it.
void SetUpLocale();

// Runs until /quit, Ctrl-D or Ctrl-C on an empty line, end of input,
// SIGTERM or SIGHUP; logs out, restores the terminal and returns the exit
// status: 0.
int RunInteractive(Client& client, Shell& shell, Printer& printer);

// Prints `line` above the prompt without disturbing what is being typed.
void PrintAbovePrompt(const std::string& line, bool to_stderr);

// Reads a line from the terminal with echo off (for passwords).
std::optional<std::string> ReadHiddenLine(const std::string& prompt);
// Asks a yes/no question on the terminal.
bool AskYesNo(const std::string& question);

}  // namespace zchat
