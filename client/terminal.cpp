#include "client/terminal.h"

#include <editline/readline.h>
#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace zchat {
namespace {

// libedit's callback interface takes a plain function: the state it needs
// lives here, set for the duration of RunInteractive.
Shell* g_shell = nullptr;
bool g_quit = false;
bool g_prompt_active = false;

std::string HistoryPath() {
  const char* home = std::getenv("HOME");
  return home ? (std::filesystem::path(home) / ".zchat_history").string() : "";
}

void InstallPrompt();

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
  rl_callback_handler_remove();
  g_prompt_active = false;
  if (!g_shell->Execute(text)) {
    g_quit = true;
    return;
  }
  InstallPrompt();
}

void InstallPrompt() {
  static std::string prompt;
  prompt = g_shell->Prompt();
  rl_callback_handler_install(prompt.c_str(), OnLine);
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
  // Take the typed text off the screen, print, and put it back.
  std::string typed = rl_line_buffer ? rl_line_buffer : "";
  int point = rl_point;
  rl_replace_line("", 0);
  rl_redisplay();
  std::fprintf(stdout, "\r\033[K");
  std::fflush(stdout);
  std::fprintf(out, "%s\n", line.c_str());
  std::fflush(out);
  rl_replace_line(typed.c_str(), 0);
  rl_point = point;
  rl_forced_update_display();
}

std::optional<std::string> ReadHiddenLine(const std::string& prompt) {
  if (!isatty(STDIN_FILENO)) return std::nullopt;
  std::fprintf(stderr, "%s", prompt.c_str());
  std::fflush(stderr);
  termios old{};
  tcgetattr(STDIN_FILENO, &old);
  termios quiet = old;
  quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
  quiet.c_lflag |= ICANON;
  tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  std::string line;
  bool got = static_cast<bool>(std::getline(std::cin, line));
  tcsetattr(STDIN_FILENO, TCSANOW, &old);
  std::fprintf(stderr, "\n");
  if (!got) {
    std::cin.clear();
    return std::nullopt;
  }
  return line;
}

bool AskYesNo(const std::string& question) {
  if (!isatty(STDIN_FILENO)) return false;
  std::fprintf(stderr, "%s", question.c_str());
  std::fflush(stderr);
  std::string answer;
  if (!std::getline(std::cin, answer)) {
    std::cin.clear();
    return false;
  }
  return answer == "y" || answer == "Y" || answer == "yes";
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
