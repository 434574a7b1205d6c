#include "client/terminal.h"

#include <editline/readline.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>

namespace zchat {
namespace {

// libedit's callback interface takes a plain function: the state it needs
// lives here, set for the duration of RunInteractive.
Shell* g_shell = nullptr;
bool g_quit = false;
bool g_prompt_active = false;
std::string g_prompt;

std::string HistoryPath() {
  const char* home = std::getenv("HOME");
  return home ? (std::filesystem::path(home) / ".zchat_history").string() : "";
}

void InstallPrompt();

// Non-canonical input, one byte at a time, with or without echo. Input
// flags (CR to NL) stay as they are.
void SetTerminalMode(bool echo) {
  if (!isatty(STDIN_FILENO)) return;
  termios t{};
  tcgetattr(STDIN_FILENO, &t);
  t.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
  if (echo) t.c_lflag |= ECHO;
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

// One byte per call straight from the descriptor: libedit must not buffer
// input behind poll()'s back, or typed keys wait for the next keypress.
int ReadOneByte(FILE*) {
  unsigned char c;
  for (;;) {
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n == 1) return c;
    if (n == 0) return EOF;
    if (errno != EINTR) return EOF;
  }
}

void OnLine(char* line) {
  if (!line) {  // Ctrl-D
    g_quit = true;
    rl_callback_handler_remove();
    g_prompt_active = false;
    std::printf("\n");
    return;
  }
  std::string text(line);
  std::free(line);
  if (!text.empty()) add_history(text.c_str());
  // Commands may ask questions on the terminal: step out of the editor.
  // Meanwhile keys typed ahead must neither be echoed nor cooked by the
  // terminal: they wait, raw, for the editor (or a question) to read them.
  rl_callback_handler_remove();
  g_prompt_active = false;
  SetTerminalMode(/*echo=*/false);
  if (!g_shell->Execute(text)) {
    g_quit = true;
    return;
  }
  InstallPrompt();
}

void InstallPrompt() {
  g_prompt = g_shell->Prompt();
  rl_callback_handler_install(g_prompt.c_str(), OnLine);
  g_prompt_active = true;
}

}  // namespace

void PrintAbovePrompt(const std::string& line, bool to_stderr) {
  FILE* out = to_stderr ? stderr : stdout;
  if (!g_prompt_active) {
    std::fprintf(out, "%s\n", line.c_str());
    std::fflush(out);
    return;
  }
  // Clear the prompt line, print, then draw the prompt and the typed text
  // again exactly as they were, cursor included, so libedit's picture of
  // the screen stays true. (libedit's rl_redisplay pushes a ^R into the
  // input, which starts a history search: not usable here.)
  const std::string typed = rl_line_buffer ? rl_line_buffer : "";
  const int point = std::min<int>(rl_point, static_cast<int>(typed.size()));
  std::fprintf(stdout, "\r\033[K");
  std::fflush(stdout);
  std::fprintf(out, "%s\n", line.c_str());
  std::fflush(out);
  std::fprintf(stdout, "%s%s", g_prompt.c_str(), typed.c_str());
  if (point < static_cast<int>(typed.size())) {
    std::fprintf(stdout, "\033[%dD", static_cast<int>(typed.size()) - point);
  }
  std::fflush(stdout);
}

namespace {

// Reads one line straight from the descriptor, byte by byte, so that text
// typed ahead stays in the terminal for the line editor.
std::optional<std::string> ReadRawLine() {
  std::string line;
  for (;;) {
    char c;
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return line.empty() ? std::nullopt : std::optional(line);
    if (c == '\n' || c == '\r') return line;
    if (c == 0x7f || c == '\b') {  // backspace: this is not cooked input
      if (!line.empty()) line.pop_back();
      continue;
    }
    line.push_back(c);
  }
}

}  // namespace

// Asks on the terminal and reads one line raw. The terminal mode is set
// before the prompt appears, so nothing typed after it is echoed unless
// `echo`.
static std::optional<std::string> Ask(const std::string& prompt, bool echo) {
  if (!isatty(STDIN_FILENO)) return std::nullopt;
  termios old{};
  tcgetattr(STDIN_FILENO, &old);
  SetTerminalMode(echo);
  std::fprintf(stderr, "%s", prompt.c_str());
  std::fflush(stderr);
  std::optional<std::string> line = ReadRawLine();
  tcsetattr(STDIN_FILENO, TCSANOW, &old);
  std::fprintf(stderr, "\n");
  return line;
}

std::optional<std::string> ReadHiddenLine(const std::string& prompt) {
  return Ask(prompt, /*echo=*/false);
}

bool AskYesNo(const std::string& question) {
  std::optional<std::string> answer = Ask(question, /*echo=*/true);
  return answer && (*answer == "y" || *answer == "Y" || *answer == "yes");
}

int RunInteractive(Client& client, Shell& shell, Printer& printer) {
  g_shell = &shell;
  g_quit = false;
  const std::string history = HistoryPath();
  using_history();
  rl_getc_function = ReadOneByte;
  if (!history.empty()) read_history(history.c_str());
  printer.Info("zchat: connected to " + client.endpoint() +
               ". /help lists the commands.");
  InstallPrompt();
  while (!g_quit) {
    auto items = client.poll_items();
    zmq::pollitem_t all[3] = {
        items[0], items[1], {nullptr, STDIN_FILENO, ZMQ_POLLIN, 0}};
    try {
      zmq::poll(all, 3, std::chrono::milliseconds(1000));
    } catch (const zmq::error_t&) {
      continue;  // EINTR (window resize, ...)
    }
    if (all[2].revents & ZMQ_POLLIN) rl_callback_read_char();
    client.Pump();
    shell.ShowEvents();
  }
  if (g_prompt_active) rl_callback_handler_remove();
  if (!history.empty()) write_history(history.c_str());
  g_shell = nullptr;
  return 0;
}

}  // namespace zchat
