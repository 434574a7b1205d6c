// The interactive front end: a libedit prompt with line editing and history,
// polled beside the client's socket so that incoming messages appear the
// moment they arrive, printed above the line being typed.
#pragma once

#include "client/client.h"
#include "client/shell.h"

namespace zchat {

// Runs until /quit or end of input; returns the exit status.
int RunInteractive(Client& client, Shell& shell, Printer& printer);

// Prints `line` above the prompt without disturbing what is being typed.
void PrintAbovePrompt(const std::string& line, bool to_stderr);

// Reads a line from the terminal with echo off (for passwords).
std::optional<std::string> ReadHiddenLine(const std::string& prompt);
// Asks a yes/no question on the terminal.
bool AskYesNo(const std::string& question);

}  // namespace zchat
