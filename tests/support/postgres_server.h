// A real PostgreSQL 15 for tests: initdb in a temporary folder, pg_ctl start with a
// Unix socket only (no TCP port), as an unprivileged user (PostgreSQL refuses to run as
// root: when the tests run as root, as in CI, the server runs as `nobody` through
// runuser). Databases are made with createdb. Debian's postgresql-15 package provides
// the binaries (scripts/install-deps.sh); without them available() is false and
// why_unavailable() says so, so tests can skip with that message.
#pragma once

#include <sys/stat.h>
#include <unistd.h>
#include <pwd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

namespace pxs::testing {

class PostgresServer {
 public:
  struct Options {
    // fsync=off makes the unit suites fast; durability tests and benchmarks keep it on.
    bool fsync = false;
    std::string extra_settings;  // more "-c name=value" for the server
  };

  static std::string BinDir() {
    const char* env = std::getenv("PXS_PG_BIN");
    return env ? env : "/usr/lib/postgresql/15/bin";
  }

  PostgresServer() : PostgresServer(Options{}) {}
  explicit PostgresServer(Options options) : options_(std::move(options)) {
    if (!std::filesystem::exists(BinDir() + "/initdb") || !std::filesystem::exists(BinDir() + "/pg_ctl")) {
      why_ = "PostgreSQL binaries not found in " + BinDir() +
             " (install postgresql-15, scripts/install-deps.sh, or set PXS_PG_BIN)";
      return;
    }
    std::string pattern = (std::filesystem::temp_directory_path() / "pxs_pg_XXXXXX").string();
    if (!mkdtemp(pattern.data())) {
      why_ = "cannot create a temporary folder for PostgreSQL";
      return;
    }
    dir_ = pattern;
    // The server's user must reach the folder (mkdtemp makes it 0700, ours).
    ::chmod(dir_.c_str(), 0755);
    std::filesystem::create_directories(data_dir());
    if (::geteuid() == 0) {
      const passwd* pw = ::getpwnam("nobody");
      if (!pw) {
        why_ = "running as root and there is no user 'nobody' to run PostgreSQL as";
        return;
      }
      as_user_ = "runuser -u nobody -- ";
      if (::chown(data_dir().c_str(), pw->pw_uid, pw->pw_gid) != 0 || ::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
        why_ = "cannot give " + dir_ + " to the user nobody";
        return;
      }
    }
    const std::string initdb = as_user_ + BinDir() + "/initdb -D " + data_dir() +
                               " -A trust -U pxs --encoding=UTF8 --locale=C --no-sync >" + dir_ +
                               "/initdb.log 2>&1";
    if (std::system(initdb.c_str()) != 0) {
      why_ = "initdb failed: " + Slurp(dir_ + "/initdb.log");
      return;
    }
    if (!Start()) {
      why_ = "pg_ctl start failed: " + Slurp(dir_ + "/server.log");
      return;
    }
    available_ = true;
  }

  ~PostgresServer() {
    if (running_) Stop();
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // One server for the whole test process (the unit suites' databases are made on it).
  static PostgresServer& Shared() {
    static PostgresServer server;
    return server;
  }

  bool available() const { return available_; }
  const std::string& why_unavailable() const { return why_; }
  const std::string& dir() const { return dir_; }
  std::string data_dir() const { return dir_ + "/data"; }
  std::string socket_dir() const { return dir_; }
  std::string log() const { return Slurp(dir_ + "/server.log"); }

  // The libpq URL of a database on this server.
  std::string Url(const std::string& database) const {
    return "postgresql:///" + database + "?host=" + socket_dir() + "&user=pxs";
  }

  // A fresh, empty database; its URL, or "" when createdb failed.
  std::string CreateDatabase(const std::string& prefix = "pxs") {
    static std::atomic<int> counter{0};
    const std::string name = prefix + "_" + std::to_string(::getpid()) + "_" + std::to_string(counter++);
    const std::string cmd = BinDir() + "/createdb -h " + socket_dir() + " -U pxs " + name + " >>" + dir_ +
                            "/createdb.log 2>&1";
    if (std::system(cmd.c_str()) != 0) return "";
    return Url(name);
  }

  // Runs SQL with psql on a database; true when psql succeeded.
  bool Psql(const std::string& database, const std::string& sql, std::string* output = nullptr) const {
    const std::string out = dir_ + "/psql.out";
    const std::string cmd = BinDir() + "/psql -X -q -At -v ON_ERROR_STOP=1 -h " + socket_dir() +
                            " -U pxs -d " + database + " -c \"" + sql + "\" >" + out + " 2>&1";
    const bool ok = std::system(cmd.c_str()) == 0;
    if (output) *output = Slurp(out);
    return ok;
  }

  // Stops the server (fast shutdown: sessions are disconnected), as a restart or an
  // outage does; Start() brings it back on the same data.
  bool Stop() {
    const std::string cmd = as_user_ + BinDir() + "/pg_ctl -D " + data_dir() + " -m fast -w stop >>" + dir_ +
                            "/pg_ctl.log 2>&1";
    running_ = false;
    return std::system(cmd.c_str()) == 0;
  }
  bool Start() {
    std::ostringstream opts;
    opts << "-k " << socket_dir() << " -c listen_addresses='' -c fsync=" << (options_.fsync ? "on" : "off")
         << " -c max_connections=200 " << options_.extra_settings;
    const std::string cmd = as_user_ + BinDir() + "/pg_ctl -D " + data_dir() + " -l " + dir_ +
                            "/server.log -w -t 60 -o \"" + opts.str() + "\" start >>" + dir_ + "/pg_ctl.log 2>&1";
    running_ = std::system(cmd.c_str()) == 0;
    if (running_) StartWatchdog();
    return running_;
  }

 private:
  // A test process that crashes (or is killed by a ctest timeout) runs no destructor: a
  // detached shell stops the server and removes its folder once this process is gone,
  // so no server outlives its tests. After a normal Stop() it finds nothing to do.
  void StartWatchdog() const {
    const std::string cmd = "(while kill -0 " + std::to_string(::getpid()) + " 2>/dev/null; do sleep 1; done; " +
                            as_user_ + BinDir() + "/pg_ctl -D " + data_dir() + " -m immediate -w stop; rm -rf " +
                            dir_ + ") >/dev/null 2>&1 </dev/null &";
    (void)std::system(cmd.c_str());
  }

  static std::string Slurp(const std::string& path) {
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  Options options_;
  std::string dir_;
  std::string as_user_;
  std::string why_;
  bool available_ = false;
  bool running_ = false;
};

}  // namespace pxs::testing
