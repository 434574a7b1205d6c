#include "client/terminal.h"

#include <fcntl.h>
#include <histedit.h>
#include <langinfo.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <clocale>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cwchar>
#include <filesystem>
#include <optional>

namespace zchat {
namespace {

// libedit's native, wide-character interface, used in its unbuffered mode:
// el_wgets() handles one keystroke per call and returns at once, so the
// editor is driven from the same poll() loop as the client's socket. The
// state it needs lives here, set for the duration of RunInteractive.
EditLine* g_el = nullptr;
HistoryW* g_history = nullptr;
Shell* g_shell = nullptr;
bool g_quit = false;
volatile sig_atomic_t g_prompt_active = false;
std::string g_prompt;
std::wstring g_wprompt;

// Signals (SIGINT, SIGTERM, SIGHUP) are noted here and written to a pipe
// that the poll loop watches.
volatile sig_atomic_t g_signal = 0;
// SIGINT while a question (a password) is being read cancels it.
volatile sig_atomic_t g_cancel_question = false;
int g_signal_pipe[2] = {-1, -1};

std::string HistoryPath() {
  const char* home = std::getenv("HOME");
  return home ? (std::filesystem::path(home) / ".zchat_history").string() : "";
}

// How many continuation bytes follow a UTF-8 lead byte; -1 when `c` cannot
// start a character.
int Continuations(unsigned c) {
  if (c < 0x80) return 0;
  if ((c >> 5) == 6) return 1;
  if ((c >> 4) == 14) return 2;
  if ((c >> 3) == 30) return 3;
  return -1;
}

// UTF-8 <-> wide. Text typed and shown is UTF-8 whatever the locale says
// (the protocol's bodies are UTF-8); an invalid sequence becomes U+FFFD.
std::wstring Widen(const std::string& s) {
  std::wstring out;
  size_t i = 0;
  while (i < s.size()) {
    const unsigned c = static_cast<unsigned char>(s[i]);
    const int more = Continuations(c);
    uint32_t cp = more <= 0 ? c : c & (0x3Fu >> more);
    int k = 1;
    for (; more > 0 && k <= more; ++k) {
      if (i + k >= s.size()) break;
      const unsigned next = static_cast<unsigned char>(s[i + k]);
      if ((next & 0xC0) != 0x80) break;
      cp = (cp << 6) | (next & 0x3F);
    }
    if (more < 0 || k <= more) {
      out.push_back(L'\xFFFD');
      ++i;
      continue;
    }
    out.push_back(static_cast<wchar_t>(cp));
    i += static_cast<size_t>(more) + 1;
  }
  return out;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string Narrow(const wchar_t* s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) AppendUtf8(out, static_cast<uint32_t>(s[i]));
  return out;
}

// Columns a wide string takes on the terminal: CJK and most emoji take two,
// combining marks none, control characters (shown as ^X) two.
int Columns(const wchar_t* s, size_t n) {
  int cols = 0;
  for (size_t i = 0; i < n; ++i) {
    const int w = wcwidth(s[i]);
    cols += w >= 0 ? w : 2;
  }
  return cols;
}

int TerminalColumns() {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    return ws.ws_col;
  }
  return 80;
}

// Reads one byte straight from the descriptor: nothing is buffered behind
// poll()'s back. -1 at end of input or on an error; EINTR is retried.
int ReadByte() {
  for (;;) {
    unsigned char c;
    const ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n == 1) return c;
    if (n == 0) return -1;
    if (errno != EINTR) return -1;
  }
}

// Set when stdin ends or fails (the terminal is gone).
bool g_input_ended = false;

// A byte read too far (not the continuation it should have been): the
// next character starts with it.
int g_pushback = -1;

// libedit's character reader: one whole character per call, decoded from
// UTF-8 here, so multi-byte keys reach the editor as one wide character
// whatever the locale. 1 with *out set, 0 at end of input.
int ReadCharacter(EditLine*, wchar_t* out) {
  int c = g_pushback >= 0 ? g_pushback : ReadByte();
  g_pushback = -1;
  if (c < 0) {
    g_input_ended = true;
    return 0;
  }
  const int more = Continuations(static_cast<unsigned>(c));
  if (more < 0) {  // a stray continuation byte or an invalid lead
    *out = L'\xFFFD';
    return 1;
  }
  uint32_t cp = more == 0 ? static_cast<uint32_t>(c)
                          : static_cast<uint32_t>(c) & (0x3Fu >> more);
  for (int k = 0; k < more; ++k) {
    const int next = ReadByte();
    if (next < 0) {
      g_input_ended = true;
      *out = L'\xFFFD';
      return 1;
    }
    if ((next & 0xC0) != 0x80) {
      g_pushback = next;
      *out = L'\xFFFD';
      return 1;
    }
    cp = (cp << 6) | (static_cast<uint32_t>(next) & 0x3F);
  }
  *out = static_cast<wchar_t>(cp);
  return 1;
}

wchar_t* PromptText(EditLine*) { return g_wprompt.data(); }

// Non-canonical input, one byte at a time, with or without echo. Input
// flags (CR to NL) and signal keys (Ctrl-C) stay as they are.
void SetTerminalMode(bool echo) {
  if (!isatty(STDIN_FILENO)) return;
  termios t{};
  if (tcgetattr(STDIN_FILENO, &t) != 0) return;
  t.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
  if (echo) t.c_lflag |= ECHO;
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

void InstallPrompt() {
  g_prompt = g_shell->Prompt();
  g_wprompt = Widen(g_prompt);
  // Set first: a Ctrl-C once the prompt is visible is the prompt's.
  g_prompt_active = true;
  // Unbuffered mode starts a fresh, empty line and draws the prompt.
  el_set(g_el, EL_UNBUFFERED, 1);
}

void RemovePrompt() {
  g_prompt_active = false;
  el_set(g_el, EL_UNBUFFERED, 0);
}

// Clears the rows the prompt and the line being typed take, leaving the
// cursor at the start of the first: what is printed next goes there.
void ClearInputRows() {
  const LineInfoW* li = el_wline(g_el);
  const int cols = TerminalColumns();
  const int before = Columns(g_wprompt.data(), g_wprompt.size()) +
                     Columns(li->buffer, li->cursor - li->buffer);
  const int row = before / cols;
  if (row > 0) std::fprintf(stdout, "\033[%dA", row);
  std::fprintf(stdout, "\r\033[J");
  std::fflush(stdout);
}

// libedit draws the prompt and the line again from scratch, the cursor where
// it was; it computes the widths of wide characters itself.
void Redraw() { el_set(g_el, EL_REFRESH); }

void RunLine(const std::string& text) {
  if (!text.empty()) {
    HistEventW ev;
    history_w(g_history, &ev, H_ENTER, Widen(text).c_str());
  }
  // Commands may ask questions on the terminal: step out of the editor.
  // Meanwhile keys typed ahead must neither be echoed nor cooked by the
  // terminal: they wait, raw, for the editor (or a question) to read them.
  RemovePrompt();
  SetTerminalMode(/*echo=*/false);
  if (!g_shell->Execute(text)) {
    g_quit = true;
    return;
  }
  if (g_signal == SIGTERM || g_signal == SIGHUP) {
    g_quit = true;
    return;
  }
  InstallPrompt();
}

// One keystroke for the editor.
void ReadKey() {
  int count = 0;
  const wchar_t* buf = el_wgets(g_el, &count);
  if (g_input_ended) {  // end of input, or the terminal is gone
    RemovePrompt();
    g_quit = true;
    return;
  }
  if (!buf || count <= 0) return;
  if (count == 1 && buf[0] == 4 /* Ctrl-D on an empty line */) {
    RemovePrompt();
    std::printf("\n");
    g_quit = true;
    return;
  }
  if (buf[count - 1] == L'\n' || buf[count - 1] == L'\r') {
    RunLine(Narrow(buf, static_cast<size_t>(count - 1)));
  }
}

// Ctrl-C at the prompt: a line being typed is dropped (left on screen with
// ^C, as a shell does); on an empty line the client leaves.
void Interrupt() {
  const LineInfoW* li = el_wline(g_el);
  if (li->lastchar == li->buffer) {
    RemovePrompt();
    std::printf("\n");
    g_quit = true;
    return;
  }
  const std::string shown =
      g_prompt + Narrow(li->buffer, li->lastchar - li->buffer) + "^C";
  ClearInputRows();
  std::fprintf(stdout, "%s\n", shown.c_str());
  std::fflush(stdout);
  el_cursor(g_el, static_cast<int>(li->lastchar - li->cursor));
  el_wdeletestr(g_el, static_cast<int>(li->lastchar - li->buffer));
  Redraw();
}

extern "C" void OnSignal(int sig) {
  const int saved = errno;
  if (sig == SIGINT && !g_prompt_active) {
    // A question is being read: cancel it. A command waiting for the
    // broker is not interrupted; the key is dropped.
    g_cancel_question = true;
  } else {
    g_signal = sig;
    const char byte = static_cast<char>(sig);
    if (write(g_signal_pipe[1], &byte, 1) < 0) {
      // The pipe is full: a signal is already waiting to be seen.
    }
  }
  errno = saved;
}

struct SignalGuard {
  struct sigaction old_int {
  }, old_term{}, old_hup{};
  SignalGuard() {
    if (pipe2(g_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
      g_signal_pipe[0] = g_signal_pipe[1] = -1;
    }
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a blocked read() returns EINTR
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    sigaction(SIGHUP, &old_hup, nullptr);
    for (int& fd : g_signal_pipe) {
      if (fd >= 0) close(fd);
      fd = -1;
    }
  }
};

}  // namespace

void SetUpLocale() {
  // The character type only: numbers (--timeout 0.5) and times keep the C
  // conventions.
  std::setlocale(LC_CTYPE, "");
  const char* codeset = nl_langinfo(CODESET);
  if (codeset && std::strcmp(codeset, "UTF-8") == 0) return;
  // Not UTF-8 (LANG=C, unset, or a legacy charset): typing and editing
  // still work in UTF-8, the protocol's encoding.
  for (const char* name : {"C.UTF-8", "C.utf8", "en_US.UTF-8"}) {
    if (std::setlocale(LC_CTYPE, name)) return;
  }
}

void PrintAbovePrompt(const std::string& line, bool to_stderr) {
  FILE* out = to_stderr ? stderr : stdout;
  if (!g_prompt_active || !g_el) {
    std::fprintf(out, "%s\n", line.c_str());
    std::fflush(out);
    return;
  }
  // Clear the prompt's rows, print, then let libedit draw the prompt and
  // the line being typed again below, unchanged, cursor included.
  ClearInputRows();
  std::fprintf(out, "%s\n", line.c_str());
  std::fflush(out);
  Redraw();
}

namespace {

// Reads one line straight from the descriptor, byte by byte, so that text
// typed ahead stays in the terminal for the line editor. Backspace removes
// a whole character (all the bytes of a multi-byte one). Ctrl-C cancels:
// nullopt.
std::optional<std::string> ReadRawLine() {
  // The signals stay blocked except inside ppoll(): one that comes while
  // a byte is being handled is seen at the next wait, never lost.
  sigset_t blocked, old;
  sigemptyset(&blocked);
  sigaddset(&blocked, SIGINT);
  sigaddset(&blocked, SIGTERM);
  sigaddset(&blocked, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &blocked, &old);
  struct Unblock {
    sigset_t* old;
    ~Unblock() { pthread_sigmask(SIG_SETMASK, old, nullptr); }
  } unblock{&old};
  std::string line;
  for (;;) {
    if (g_cancel_question || g_signal == SIGTERM || g_signal == SIGHUP) {
      g_cancel_question = false;
      return std::nullopt;
    }
    pollfd in{STDIN_FILENO, POLLIN, 0};
    if (ppoll(&in, 1, nullptr, &old) < 0) {
      if (errno == EINTR) continue;  // a signal: seen at the loop's top
      return std::nullopt;
    }
    char c;
    ssize_t n = read(STDIN_FILENO, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return line.empty() ? std::nullopt : std::optional(line);
    if (c == '\n' || c == '\r') return line;
    if (c == 0x7f || c == '\b') {  // backspace: this is not cooked input
      while (!line.empty() &&
             (static_cast<unsigned char>(line.back()) & 0xC0) == 0x80) {
        line.pop_back();  // continuation bytes
      }
      if (!line.empty()) line.pop_back();
      continue;
    }
    if (c == 0x15) {  // Ctrl-U: start again
      line.clear();
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
  const bool saved = tcgetattr(STDIN_FILENO, &old) == 0;
  SetTerminalMode(echo);
  g_cancel_question = false;  // only a Ctrl-C from now on cancels
  std::fprintf(stderr, "%s", prompt.c_str());
  std::fflush(stderr);
  std::optional<std::string> line = ReadRawLine();
  if (saved) tcsetattr(STDIN_FILENO, TCSANOW, &old);
  std::fprintf(stderr, line ? "\n" : "^C\n");
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
  termios saved_mode{};
  const bool have_mode = tcgetattr(STDIN_FILENO, &saved_mode) == 0;
  SignalGuard signals;
  g_shell = &shell;
  g_quit = false;
  g_signal = 0;
  g_input_ended = false;
  g_pushback = -1;
  const std::string history = HistoryPath();

  g_el = el_init("zchat", stdin, stdout, stderr);
  g_history = history_winit();
  HistEventW ev;
  history_w(g_history, &ev, H_SETSIZE, 1000);
  el_wset(g_el, EL_HIST, history_w, g_history);
  el_set(g_el, EL_EDITOR, "emacs");
  el_set(g_el, EL_SIGNAL, 0);  // signals are handled here
  el_wset(g_el, EL_PROMPT, PromptText);
  el_wset(g_el, EL_GETCFN, ReadCharacter);
  el_source(g_el, nullptr);  // ~/.editrc, or $EDITRC
  if (!history.empty()) history_w(g_history, &ev, H_LOAD, history.c_str());

  printer.Info("zchat: connected to " + client.endpoint() +
               ". /help lists the commands.");
  InstallPrompt();
  while (!g_quit) {
    auto items = client.poll_items();
    zmq::pollitem_t all[4] = {items[0],
                              items[1],
                              {nullptr, STDIN_FILENO, ZMQ_POLLIN, 0},
                              {nullptr, g_signal_pipe[0], ZMQ_POLLIN, 0}};
    const int n = g_signal_pipe[0] >= 0 ? 4 : 3;
    try {
      zmq::poll(all, n, std::chrono::milliseconds(1000));
    } catch (const zmq::error_t&) {
      all[2].revents = all[3].revents = 0;  // EINTR: the signal's byte waits
    }
    if (n == 4 && (all[3].revents & ZMQ_POLLIN)) {
      char sig;
      while (read(g_signal_pipe[0], &sig, 1) == 1) {
        if (sig == SIGINT && g_prompt_active) {
          Interrupt();
        } else if (sig == SIGTERM || sig == SIGHUP) {
          if (g_prompt_active) {
            RemovePrompt();
            std::printf("\n");
          }
          g_quit = true;
        }
      }
      if (g_quit) break;
    }
    if (all[2].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) ReadKey();
    client.Pump();
    shell.ShowEvents();
  }
  if (g_prompt_active) RemovePrompt();
  if (have_mode) tcsetattr(STDIN_FILENO, TCSANOW, &saved_mode);
  if (!history.empty()) history_w(g_history, &ev, H_SAVE, history.c_str());
  el_end(g_el);
  g_el = nullptr;
  history_wend(g_history);
  g_history = nullptr;
  // Leaving ends the session: the broker then keeps notices for the next
  // login instead of pushing them to a connection about to close.
  // A failure is shown; leaving still succeeds.
  if (client.logged_in()) (void)shell.Logout();
  shell.ShowEvents();
  g_shell = nullptr;
  return 0;
}

}  // namespace zchat
