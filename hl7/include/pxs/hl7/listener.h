// MllpListener: the node's HL7 v2 listener ([hl7]) over MLLP (the Minimal Lower Layer
// Protocol: <VT> message <FS><CR> frames on TCP), on Boost.Asio.
//
// Each frame is interpreted (oru.h); an ORU^R01 it accepts is handed to the group
// committer and ACKed (MSA AA) only once its transaction is durable. Frames are
// answered in order per connection; a sender may pipeline several. A frame over
// max_message_bytes is answered AR without being kept (its bytes are skipped to the
// end of the frame); a connection that closes inside a frame loses only that frame,
// which was never acknowledged.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "pxs/common/status.h"
#include "pxs/hl7/committer.h"
#include "pxs/hl7/oru.h"

namespace pxs::hl7 {

struct ListenerOptions {
  std::string bind = "127.0.0.1";
  uint16_t port = 2575;  // 0: an ephemeral port (tests)
  size_t max_message_bytes = 1 << 20;
  OruOptions oru;
  int idle_timeout_s = 300;   // a connection silent this long is closed
  int max_connections = 64;   // open at once; more are closed on accept
  int threads = 2;            // I/O threads (parsing is cheap; commits are the committer's)
};

class MllpListener {
 public:
  // Binds and listens (errors name the address and port) and starts the I/O threads.
  // committer must outlive the listener.
  static StatusOr<std::unique_ptr<MllpListener>> Start(const ListenerOptions& options,
                                                       ObservationCommitter* committer);
  ~MllpListener();  // Stop()
  MllpListener(const MllpListener&) = delete;
  MllpListener& operator=(const MllpListener&) = delete;

  // Stops accepting; connections finish the frames they have (their ACKs go out after
  // the commit) and close, for at most a few seconds; then joins the threads.
  void Stop();
  uint16_t port() const;

 private:
  class Impl;
  explicit MllpListener(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace pxs::hl7
