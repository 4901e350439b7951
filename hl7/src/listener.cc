#include "pxs/hl7/listener.h"

#include <spdlog/spdlog.h>

#include <array>
#include <atomic>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "pxs/common/thread_name.h"

namespace pxs::hl7 {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

constexpr char kStartBlock = 0x0B;  // <VT>
constexpr char kEndBlock = 0x1C;    // <FS>, followed by <CR>
constexpr char kCarriageReturn = 0x0D;
constexpr size_t kMaxQueuedFrames = 16;  // per connection, before reading pauses

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Frame(const std::string& message) {
  std::string out;
  out.reserve(message.size() + 3);
  out.push_back(kStartBlock);
  out += message;
  out.push_back(kEndBlock);
  out.push_back(kCarriageReturn);
  return out;
}

}  // namespace

class MllpListener::Impl : public std::enable_shared_from_this<MllpListener::Impl> {
 public:
  Impl(ListenerOptions options, ObservationCommitter* committer)
      : options_(std::move(options)), committer_(committer), work_(asio::make_work_guard(io_)), acceptor_(io_) {}

  Status Listen() {
    boost::system::error_code ec;
    auto address = asio::ip::make_address(options_.bind, ec);
    if (ec) return Status::InvalidArgument("[hl7] bind: '" + options_.bind + "' is not an IP address");
    tcp::endpoint endpoint(address, options_.port);
    const std::string where = options_.bind + ":" + std::to_string(options_.port);
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::IoError("HL7 listener: cannot listen on " + where + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    return Status::Ok();
  }

  void Run() {
    Accept();
    const int n = std::max(1, options_.threads);
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] {
        NameThisThread("pxs-hl7");
        io_.run();
      });
    }
  }

  void Stop();
  uint16_t port() const { return port_; }

  class Connection;
  const ListenerOptions& options() const { return options_; }
  ObservationCommitter* committer() const { return committer_; }
  std::atomic<int> open{0};
  std::string NextAckId() { return "PXS" + std::to_string(NowMs()) + "." + std::to_string(++ack_counter_); }

  void Forget(Connection* c) {
    std::lock_guard lock(mu_);
    live_.erase(c);
  }

 private:
  void Accept();

  ListenerOptions options_;
  ObservationCommitter* committer_;
  asio::io_context io_;
  // Keeps io_.run() going while Stop() drains: without it the I/O threads return as
  // soon as the closed acceptor leaves no work, and the connections' shutdown handlers
  // posted after that would never run (each connection then waited out the deadline).
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> ack_counter_{0};
  std::mutex mu_;
  std::set<Connection*> live_;
  std::vector<std::weak_ptr<Connection>> all_;
  bool stopped_ = false;
  friend class Connection;
};

class MllpListener::Impl::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<Impl> owner, tcp::socket socket)
      : owner_(std::move(owner)), socket_(std::move(socket)), strand_(socket_.get_executor()), idle_(strand_) {
    boost::system::error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    peer_ = ec ? std::string("?") : remote.address().to_string() + ":" + std::to_string(remote.port());
  }
  ~Connection() {
    owner_->open--;
    owner_->Forget(this);
  }

  void Start() {
    asio::post(strand_, [self = shared_from_this()] {
      self->ArmIdleTimer();
      self->Read();
    });
  }

  // Shutdown: no new frames; what is queued is still answered.
  void StopReading() {
    asio::post(strand_, [self = shared_from_this()] {
      self->eof_ = true;
      boost::system::error_code ec;
      self->socket_.shutdown(tcp::socket::shutdown_receive, ec);
      self->MaybeClose();
    });
  }

 private:
  struct Pending {
    std::string text;     // the message; for an oversize frame only its first bytes
    size_t size = 0;
    bool oversize = false;
  };

  void Read() {
    if (reading_ || eof_ || frames_.size() >= kMaxQueuedFrames) return;
    reading_ = true;
    socket_.async_read_some(asio::buffer(buf_), asio::bind_executor(strand_, [self = shared_from_this()](
                                                                              boost::system::error_code ec, size_t n) {
                              self->reading_ = false;
                              self->OnRead(ec, n);
                            }));
  }

  void OnRead(boost::system::error_code ec, size_t n) {
    last_activity_ = std::chrono::steady_clock::now();
    if (n > 0) Scan(buf_.data(), n);
    if (ec) {
      if (ec != asio::error::eof && ec != asio::error::operation_aborted && ec != asio::error::connection_reset) {
        spdlog::warn("HL7 {}: read failed: {}", peer_, ec.message());
      }
      if (state_ != State::kOutside) {
        spdlog::warn("HL7 {}: connection closed inside an MLLP frame ({} bytes, no end block): the truncated message "
                     "is discarded and was not acknowledged", peer_, state_ == State::kSkipping ? skipped_ : frame_.size());
        frame_.clear();
        state_ = State::kOutside;
      }
      eof_ = true;
    }
    ProcessNext();
    Read();
    MaybeClose();
  }

  // MLLP framing: <VT> data <FS><CR>. Whitespace between frames is tolerated, other
  // bytes outside a frame are dropped (with one warning per connection).
  void Scan(const char* data, size_t n) {
    const size_t max = owner_->options().max_message_bytes;
    for (size_t i = 0; i < n; ++i) {
      const char c = data[i];
      switch (state_) {
        case State::kOutside:
          if (c == kStartBlock) {
            state_ = State::kInside;
            frame_.clear();
            saw_end_block_ = false;
          } else if (c != '\r' && c != '\n' && c != ' ' && !warned_junk_) {
            warned_junk_ = true;
            spdlog::warn("HL7 {}: bytes outside an MLLP frame (expected <VT> 0x0B) are ignored", peer_);
          }
          break;
        case State::kInside:
          if (saw_end_block_) {
            saw_end_block_ = false;
            if (c == kCarriageReturn) {
              frames_.push_back({std::move(frame_), 0, false});
              frames_.back().size = frames_.back().text.size();
              frame_.clear();
              state_ = State::kOutside;
              break;
            }
            frame_.push_back(kEndBlock);  // an FS not followed by CR is data
          }
          if (c == kEndBlock) {
            saw_end_block_ = true;
          } else if (c == kStartBlock) {
            spdlog::warn("HL7 {}: a new MLLP frame started before the previous one ended: {} bytes discarded (not "
                         "acknowledged)", peer_, frame_.size());
            frame_.clear();
          } else {
            // Copy the run of plain bytes at once (the common case).
            size_t j = i;
            while (j < n && data[j] != kEndBlock && data[j] != kStartBlock) ++j;
            frame_.append(data + i, j - i);
            i = j - 1;
            if (frame_.size() > max) {
              head_ = frame_.substr(0, 4096);
              skipped_ = frame_.size();
              frame_.clear();
              frame_.shrink_to_fit();
              state_ = State::kSkipping;
            }
          }
          break;
        case State::kSkipping:
          if (saw_end_block_ && c == kCarriageReturn) {
            frames_.push_back({std::move(head_), skipped_, true});
            state_ = State::kOutside;
            saw_end_block_ = false;
            break;
          }
          saw_end_block_ = c == kEndBlock;
          if (!saw_end_block_) ++skipped_;
          break;
      }
    }
  }

  void ProcessNext() {
    if (busy_ || frames_.empty()) return;
    Pending frame = std::move(frames_.front());
    frames_.pop_front();
    const int64_t now = NowMs();
    if (frame.oversize) {
      AckContext ctx = GuessAckContext(frame.text);
      const std::string why = "message of at least " + std::to_string(frame.size) + " bytes is larger than [hl7] max_message_bytes (" +
                              std::to_string(owner_->options().max_message_bytes) + "): not stored";
      spdlog::warn("HL7 {}: AR for message {}: {}", peer_, ctx.control_id, why);
      Write(BuildAck(ctx, AckCode::kAR, {{"", 0, 0, 207, why, 'E'}}, owner_->NextAckId(), now));
      ProcessNext();
      return;
    }
    OruResult result = InterpretOru(std::move(frame.text), owner_->options().oru, now);
    if (result.ack != AckCode::kAA) {
      spdlog::warn("HL7 {}: {} for message {} from {}: {}", peer_, AckCodeText(result.ack), result.context.control_id,
                   SenderKey(result.context.sending_application, result.context.sending_facility),
                   result.errors.empty() ? std::string("?") : result.errors.front().text);
      Write(BuildAck(result.context, result.ack, result.errors, owner_->NextAckId(), now));
      ProcessNext();
      return;
    }
    busy_ = true;
    auto context = std::make_shared<AckContext>(std::move(result.context));
    auto warnings = std::make_shared<std::vector<Hl7Error>>(std::move(result.errors));
    const size_t count = result.message.observations.size();
    owner_->committer()->Submit(
        std::move(result.message),
        [self = shared_from_this(), context, warnings, count](const Status& st, MessageOutcome outcome) {
          asio::post(self->strand_, [self, context, warnings, count, st, outcome] {
            const int64_t now = NowMs();
            if (st.ok()) {
              spdlog::debug("HL7 {}: AA for message {} ({} observations{})", self->peer_, context->control_id, count,
                            outcome == MessageOutcome::kDuplicate ? ", a resend: already stored" : "");
              self->Write(BuildAck(*context, AckCode::kAA, *warnings, self->owner_->NextAckId(), now));
            } else {
              spdlog::error("HL7 {}: AR for message {}: not stored: {}", self->peer_, context->control_id, st.ToString());
              Hl7Error e{"", 0, 0, 207, "the node could not store the message (" + st.message() + "): send it again later", 'E'};
              self->Write(BuildAck(*context, AckCode::kAR, {e}, self->owner_->NextAckId(), now));
            }
            self->busy_ = false;
            self->ProcessNext();
            self->Read();
            self->MaybeClose();
          });
        });
  }

  void Write(std::string ack) {
    out_.push_back(Frame(ack));
    if (writing_) return;
    WriteFront();
  }

  void WriteFront() {
    if (out_.empty()) {
      MaybeClose();
      return;
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(out_.front()),
                      asio::bind_executor(strand_, [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        self->writing_ = false;
                        self->out_.pop_front();
                        if (ec) {
                          spdlog::warn("HL7 {}: writing an ACK failed: {}", self->peer_, ec.message());
                          self->out_.clear();
                          self->frames_.clear();
                          self->eof_ = true;
                        }
                        self->WriteFront();
                      }));
  }

  void MaybeClose() {
    if (closed_ || !eof_ || busy_ || !frames_.empty() || writing_ || !out_.empty()) return;
    closed_ = true;
    boost::system::error_code ec;
    idle_.cancel();
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }

  void ArmIdleTimer() {
    const auto timeout = std::chrono::seconds(std::max(1, owner_->options().idle_timeout_s));
    idle_.expires_after(timeout);
    idle_.async_wait([self = shared_from_this(), timeout](boost::system::error_code ec) {
      if (ec || self->closed_) return;
      if (!self->busy_ && self->frames_.empty() && std::chrono::steady_clock::now() - self->last_activity_ >= timeout) {
        spdlog::info("HL7 {}: idle for {} s: closing the connection", self->peer_, timeout.count());
        self->eof_ = true;
        boost::system::error_code ignored;
        self->socket_.shutdown(tcp::socket::shutdown_receive, ignored);
        self->MaybeClose();
        return;
      }
      self->ArmIdleTimer();
    });
  }

  enum class State { kOutside, kInside, kSkipping };

  std::shared_ptr<Impl> owner_;
  tcp::socket socket_;
  asio::strand<tcp::socket::executor_type> strand_;
  asio::steady_timer idle_;
  std::string peer_;
  std::array<char, 64 * 1024> buf_{};
  State state_ = State::kOutside;
  bool saw_end_block_ = false;
  bool warned_junk_ = false;
  std::string frame_;
  std::string head_;
  size_t skipped_ = 0;
  std::deque<Pending> frames_;
  std::deque<std::string> out_;
  bool reading_ = false, writing_ = false, busy_ = false, eof_ = false, closed_ = false;
  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();
};

void MllpListener::Impl::Accept() {
  acceptor_.async_accept(asio::make_strand(io_), [self = shared_from_this()](boost::system::error_code ec,
                                                                             tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !self->acceptor_.is_open()) return;
      spdlog::warn("HL7 listener: accept failed: {}", ec.message());
      self->Accept();
      return;
    }
    if (self->open.load() >= self->options_.max_connections) {
      spdlog::warn("HL7 listener: {} connections open ([hl7] max_connections): closing a new one", self->open.load());
      boost::system::error_code ignored;
      socket.close(ignored);
      self->Accept();
      return;
    }
    socket.set_option(tcp::no_delay(true), ec);
    self->open++;
    auto conn = std::make_shared<Connection>(self, std::move(socket));
    {
      std::lock_guard lock(self->mu_);
      if (self->stopped_) return;  // conn closes as it goes out of scope
      self->live_.insert(conn.get());
      self->all_.push_back(conn);
      if (self->all_.size() > 1024) {
        std::erase_if(self->all_, [](const std::weak_ptr<Connection>& w) { return w.expired(); });
      }
    }
    conn->Start();
    self->Accept();
  });
}

void MllpListener::Impl::Stop() {
  std::vector<std::shared_ptr<Connection>> conns;
  {
    std::lock_guard lock(mu_);
    if (stopped_) return;
    stopped_ = true;
    for (auto& w : all_) {
      if (auto c = w.lock()) conns.push_back(std::move(c));
    }
  }
  asio::post(io_, [self = shared_from_this()] {
    boost::system::error_code ec;
    self->acceptor_.close(ec);
  });
  for (auto& c : conns) c->StopReading();
  conns.clear();
  // Frames already received get their commit and ACK; a few seconds at most.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (open.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  work_.reset();
  if (open.load() > 0) {
    spdlog::warn("HL7 listener: {} connections still open after 5 s: closing them", open.load());
    io_.stop();
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

StatusOr<std::unique_ptr<MllpListener>> MllpListener::Start(const ListenerOptions& options,
                                                             ObservationCommitter* committer) {
  auto impl = std::make_shared<Impl>(options, committer);
  PXS_RETURN_IF_ERROR(impl->Listen());
  impl->Run();
  spdlog::info("HL7 v2 (MLLP) listener on {}:{}", options.bind, impl->port());
  return std::unique_ptr<MllpListener>(new MllpListener(std::move(impl)));
}

MllpListener::MllpListener(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
MllpListener::~MllpListener() { Stop(); }
void MllpListener::Stop() {
  if (impl_) impl_->Stop();
}
uint16_t MllpListener::port() const { return impl_->port(); }

}  // namespace pxs::hl7
