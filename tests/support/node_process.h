// Helpers for end-to-end tests: run the real pxsnode binary on a free loopback port with
// a temp data folder, run DCMTK's command-line tools against it, wait for conditions.
#pragma once

#include <signal.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace pxs::testing {

inline std::string BinDir() { return std::string(PXS_BINARY_DIR) + "/bin"; }
inline std::string TestModelPath() { return std::string(PXS_SOURCE_DIR) + "/tests/fixtures/pxs_test_model.pt"; }

// A port nobody listens on right now (bind to 0, read it back, release it). The kernel
// may hand the same port out twice in a row, so ports already given are skipped.
inline uint16_t FreePort() {
  static std::vector<uint16_t> given;
  for (int tries = 0; tries < 50; ++tries) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    uint16_t port = ntohs(addr.sin_port);
    if (std::find(given.begin(), given.end(), port) == given.end()) {
      given.push_back(port);
      return port;
    }
  }
  return 0;
}

inline bool PortOpen(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

inline bool WaitFor(const std::function<bool()>& cond, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

// A child process with stdout+stderr going to a log file.
class Process {
 public:
  Process() = default;
  Process(const std::vector<std::string>& argv, const std::string& log_path) { Start(argv, log_path); }
  ~Process() { Kill(SIGKILL); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  Process(Process&& o) noexcept : pid_(o.pid_), log_(std::move(o.log_)) { o.pid_ = -1; }

  void Start(const std::vector<std::string>& argv, const std::string& log_path) {
    log_ = log_path;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawnp(&pid_, args[0], &actions, nullptr, args.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
  }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  void Signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  // Waits for the exit; returns the exit code, 128+signal, or -1 on timeout.
  int Wait(std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
    if (pid_ <= 0) return -1;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    int status = 0;
    while (true) {
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (std::chrono::steady_clock::now() > deadline) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void Kill(int sig) {
    if (pid_ > 0) {
      ::kill(pid_, sig);
      Wait(std::chrono::seconds(30));
    }
  }
  std::string Log() const {
    std::ifstream in(log_);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

struct CommandResult {
  int exit_code = -1;
  std::string output;
};

// Runs a command to completion, capturing stdout+stderr.
inline CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& log_path) {
  std::filesystem::remove(log_path);
  Process p(argv, log_path);
  CommandResult r;
  r.exit_code = p.Wait(std::chrono::minutes(10));
  r.output = p.Log();
  return r;
}

// What `storescu -v` reported for each file: each "Sending file: X" line is followed by
// the response to that file.
struct StorescuOutcomes {
  std::set<std::string> succeeded;
  std::set<std::string> out_of_resources;  // "Refused: OutOfResources" (0xA700)
};
inline StorescuOutcomes ParseStorescuLog(const std::string& log) {
  StorescuOutcomes out;
  std::istringstream in(log);
  std::string line, current;
  while (std::getline(in, line)) {
    if (auto at = line.find("Sending file: "); at != std::string::npos) current = line.substr(at + 14);
    if (current.empty()) continue;
    if (line.find("Received Store Response (Success)") != std::string::npos) out.succeeded.insert(current);
    if (line.find("Refused: OutOfResources") != std::string::npos) out.out_of_resources.insert(current);
  }
  return out;
}

// Writes a pxsnode config for tests and returns its path.
// scp_lines go into [scp] (e.g. "allowed_calling_aes = [\"A\"]\n"); tail is appended
// after [scoring] (e.g. [[destinations]] and [reports]).
inline std::string WriteNodeConfig(const std::filesystem::path& dir, uint16_t port, const std::string& scp_lines = "",
                                   const std::string& tail = "", const std::string& model = TestModelPath()) {
  std::filesystem::path path = dir / "pxsnode.toml";
  std::ofstream out(path);
  out << "[node]\nae_title = \"PXSNODE\"\nbind = \"127.0.0.1\"\nport = " << port << "\ndata_dir = \""
      << (dir / "data").string() << "\"\nlog_level = \"info\"\n"
      << "[scp]\nshutdown_grace_s = 10\n"
      << (scp_lines.find("min_free") == std::string::npos ? "min_free_gb = 0.0\nmin_free_percent = 0.0\n" : "")
      << scp_lines << "[scoring]\nmodel = \"" << model << "\"\ndevice = \"cpu\"\nintra_op_threads = 1\nmax_wait_ms = 20\n"
      << tail;
  return path.string();
}

// pxsnode started on a config; Start() waits until the port accepts connections.
class Node {
 public:
  Node(std::filesystem::path dir, uint16_t port) : dir_(std::move(dir)), port_(port) {}
  bool Start(const std::string& config) {
    proc_ = std::make_unique<Process>(std::vector<std::string>{BinDir() + "/pxsnode", "--config", config},
                                      (dir_ / "pxsnode.log").string());
    return WaitFor([&] { return PortOpen(port_); }, std::chrono::seconds(60));
  }
  Process& process() { return *proc_; }
  std::string Log() const { return proc_ ? proc_->Log() : std::string(); }
  std::filesystem::path data_dir() const { return dir_ / "data"; }
  uint16_t port() const { return port_; }

 private:
  std::filesystem::path dir_;
  uint16_t port_;
  std::unique_ptr<Process> proc_;
};

}  // namespace pxs::testing
