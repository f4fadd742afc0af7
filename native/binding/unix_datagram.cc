// UnixDatagram: see unix_datagram.h.
#include "unix_datagram.h"

#include "errno_error.h"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace knockd {

namespace {

Napi::Error SyscallError(Napi::Env env, int err, const char* syscall, const std::string& path) {
  return ErrnoError(env, err, std::string(syscall) + " " + path + ": " + std::strerror(err), syscall);
}

}  // namespace

Napi::Function UnixDatagram::Define(Napi::Env env) {
  return DefineClass(env, "UnixDatagram",
                     {InstanceMethod<&UnixDatagram::JsSend>("send"), InstanceMethod<&UnixDatagram::JsClose>("close")});
}

UnixDatagram::UnixDatagram(const Napi::CallbackInfo& info) : Napi::ObjectWrap<UnixDatagram>(info) {
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(info.Env(), "UnixDatagram(path): path must be a string");
  path_ = info[0].As<Napi::String>().Utf8Value();
  if (path_.empty() || path_.size() >= sizeof(sockaddr_un{}.sun_path)) {
    throw Napi::RangeError::New(info.Env(), "UnixDatagram(path): path must be 1 to 107 bytes long");
  }
  if (int err = Connect()) throw SyscallError(info.Env(), err, "connect", path_);
}

UnixDatagram::~UnixDatagram() {
  if (fd_ >= 0) close(fd_);
}

int UnixDatagram::Connect() {
  if (fd_ >= 0) close(fd_);
  fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) return errno;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path_.data(), path_.size());
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd_);
    fd_ = -1;
    return err;
  }
  return 0;
}

Napi::Value UnixDatagram::JsSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
    throw Napi::TypeError::New(env, "UnixDatagram.send(data): data must be a Uint8Array");
  }
  auto data = info[0].As<Napi::Uint8Array>();
  // the log daemon may have restarted (its socket re-created): reconnect once, as glibc's syslog does
  for (int attempt = 0; attempt < 2; attempt++) {
    if (fd_ < 0) {
      if (int err = Connect()) throw SyscallError(env, err, "connect", path_);
    }
    if (send(fd_, data.Data(), data.ByteLength(), MSG_NOSIGNAL) >= 0) return Napi::Boolean::New(env, true);
    int err = errno;
    // the log daemon is behind: drop this message rather than block the event loop
    if (err == EAGAIN) return Napi::Boolean::New(env, false);
    if (attempt == 0 && (err == ECONNREFUSED || err == ENOTCONN)) {
      close(fd_);
      fd_ = -1;
      continue;
    }
    throw SyscallError(env, err, "send", path_);
  }
  return Napi::Boolean::New(env, false);
}

Napi::Value UnixDatagram::JsClose(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

}  // namespace knockd
