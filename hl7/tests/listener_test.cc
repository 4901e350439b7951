// The MLLP listener over loopback with the real SQLite store: ACK after the commit,
// resends stored once, pipelined frames answered in order, truncated and oversize
// frames, concurrent senders through the group committer.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/write.hpp>
#include <filesystem>
#include <thread>

#include "pxs/hl7/listener.h"
#include "pxs/hl7/message.h"
#include "pxs/storage/observations.h"

namespace pxs::hl7 {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

std::string Oru(const std::string& control_id, const std::string& patient, double spo2) {
  return "MSH|^~\\&|MONITOR|ICU|PXSNODE|PXS|20251203080000||ORU^R01|" + control_id + "|P|2.5.1\r" + "PID|1||" +
         patient + "^^^HOSP^MR\r" + "OBR|1|||VITALS|||20251203074500\r" + "OBX|1|NM|59408-5^SpO2^LN||" +
         std::to_string(spo2) + "|%|||||F|||20251203075500\r";
}

std::string Framed(const std::string& m) { return "\x0b" + m + "\x1c\r"; }

class Client {
 public:
  explicit Client(uint16_t port) : socket_(io_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }
  void Send(const std::string& bytes) { asio::write(socket_, asio::buffer(bytes)); }
  // The next ACK's MSA-1 and MSA-2 ("AA MSG1"), or "" when the connection closed.
  std::string ReadAck(std::string* whole = nullptr) {
    boost::system::error_code ec;
    size_t n = asio::read_until(socket_, asio::dynamic_buffer(buffer_), "\x1c\r", ec);
    if (ec) return "";
    std::string frame = buffer_.substr(0, n);
    buffer_.erase(0, n);
    EXPECT_EQ(frame.front(), '\x0b');
    std::string text = frame.substr(1, frame.size() - 3);
    if (whole) *whole = text;
    auto m = Message::Parse(text);
    EXPECT_TRUE(m.ok()) << text;
    if (!m.ok()) return "?";
    for (const Segment& s : m->segments()) {
      if (s.id == "MSA") return s.Get(1) + " " + s.Get(2);
    }
    return "no MSA";
  }
  void Close() { socket_.close(); }

 private:
  asio::io_context io_;
  tcp::socket socket_;
  std::string buffer_;
};

class ListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("pxs_hl7_listener_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    db_path_ = (dir_ / "pxsnode.db").string();
    auto store = ObservationStore::Open(db_path_, Database::Mode::kReadWrite);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(*store);
    committer_ = std::make_unique<ObservationCommitter>(store_.get());
    ListenerOptions options;
    options.port = 0;
    options.max_message_bytes = 64 * 1024;
    auto listener = MllpListener::Start(options, committer_.get());
    ASSERT_TRUE(listener.ok()) << listener.status().ToString();
    listener_ = std::move(*listener);
  }
  void TearDown() override {
    listener_.reset();
    committer_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  // Read through a connection of its own: only committed rows are visible there.
  size_t Stored(const std::string& patient) {
    auto reader = ObservationStore::Open(db_path_, Database::Mode::kReadOnly);
    EXPECT_TRUE(reader.ok());
    auto rows = (*reader)->PatientObservations({patient, "HOSP"}, std::nullopt, std::nullopt);
    EXPECT_TRUE(rows.ok());
    return rows.ok() ? rows->size() : 0;
  }

  std::filesystem::path dir_;
  std::string db_path_;
  std::unique_ptr<ObservationStore> store_;
  std::unique_ptr<ObservationCommitter> committer_;
  std::unique_ptr<MllpListener> listener_;
};

TEST_F(ListenerTest, AcksAfterTheCommitAndStoresAResendOnce) {
  Client c(listener_->port());
  c.Send(Framed(Oru("M1", "P1", 93)));
  ASSERT_EQ(c.ReadAck(), "AA M1");
  EXPECT_EQ(Stored("P1"), 1u);  // visible to another connection as soon as the ACK is out
  c.Send(Framed(Oru("M1", "P1", 93)));
  EXPECT_EQ(c.ReadAck(), "AA M1");
  EXPECT_EQ(Stored("P1"), 1u);
}

TEST_F(ListenerTest, AnswersPipelinedFramesInOrder) {
  Client c(listener_->port());
  c.Send(Framed(Oru("A", "P2", 90)) + Framed("MSH|^^\\&|X|Y|||20251203||ORU^R01|B|P|2.5\r") + Framed(Oru("C", "P2", 91)));
  EXPECT_EQ(c.ReadAck(), "AA A");
  std::string whole;
  EXPECT_EQ(c.ReadAck(&whole), "AR B");
  EXPECT_NE(whole.find("MSH-2"), std::string::npos) << whole;
  EXPECT_EQ(c.ReadAck(), "AA C");
  EXPECT_EQ(Stored("P2"), 2u);
}

TEST_F(ListenerTest, TruncatedFramesAreNeitherStoredNorAcknowledged) {
  {
    Client c(listener_->port());
    std::string full = Framed(Oru("T1", "P3", 88));
    c.Send(full.substr(0, full.size() / 2));
    c.Close();
  }
  Client c(listener_->port());
  std::string full = Framed(Oru("T2", "P3", 89));
  // A frame cut short and a new one started on the same connection: only the second counts.
  c.Send(full.substr(0, full.size() - 10) + Framed(Oru("T3", "P3", 90)));
  EXPECT_EQ(c.ReadAck(), "AA T3");
  EXPECT_EQ(Stored("P3"), 1u);
}

TEST_F(ListenerTest, OversizeFrameIsRejectedAndTheConnectionGoesOn) {
  Client c(listener_->port());
  std::string big = Oru("BIG", "P4", 80);
  big += "NTE|1||" + std::string(100 * 1024, 'x') + "\r";
  c.Send(Framed(big) + Framed(Oru("SMALL", "P4", 81)));
  std::string whole;
  EXPECT_EQ(c.ReadAck(&whole), "AR BIG");
  EXPECT_NE(whole.find("max_message_bytes"), std::string::npos) << whole;
  EXPECT_EQ(c.ReadAck(), "AA SMALL");
  EXPECT_EQ(Stored("P4"), 1u);
}

TEST_F(ListenerTest, ConcurrentSendersShareCommits) {
  constexpr int kSenders = 4, kEach = 150;
  std::vector<std::thread> threads;
  std::atomic<int> acked{0};
  for (int s = 0; s < kSenders; ++s) {
    threads.emplace_back([&, s] {
      Client c(listener_->port());
      for (int i = 0; i < kEach; ++i) {
        const std::string id = "S" + std::to_string(s) + "-" + std::to_string(i);
        c.Send(Framed(Oru(id, "P5", 90 + i % 5)));
        if (c.ReadAck() == "AA " + id) acked++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(acked.load(), kSenders * kEach);
  EXPECT_EQ(Stored("P5"), static_cast<size_t>(kSenders * kEach));
  EXPECT_EQ(committer_->committed_messages(), static_cast<uint64_t>(kSenders * kEach));
  EXPECT_LE(committer_->commits(), committer_->committed_messages());
}

}  // namespace
}  // namespace pxs::hl7
