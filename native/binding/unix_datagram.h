// Node has no AF_UNIX datagram sockets; syslog's /dev/log is one. A connected SOCK_DGRAM socket per
// instance, one non-blocking send() per message (no process per line). JS shape: src/native.ts
// UnixDatagramHandle.
#pragma once
#include <napi.h>

#include <string>

namespace knockd {

class UnixDatagram : public Napi::ObjectWrap<UnixDatagram> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit UnixDatagram(const Napi::CallbackInfo& info);
  ~UnixDatagram() override;

 private:
  Napi::Value JsSend(const Napi::CallbackInfo& info);
  Napi::Value JsClose(const Napi::CallbackInfo& info);
  int Connect();  // 0 or an errno

  std::string path_;
  int fd_ = -1;
};

}  // namespace knockd
