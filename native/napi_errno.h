/*
 * What both addons (inotify.c, fs.c) share: errors thrown to JS as
 * `Error` objects whose `code` is the errno name, as node's own fs does, and
 * a check of every N-API call.
 */
#ifndef PSYNC_NAPI_ERRNO_H
#define PSYNC_NAPI_ERRNO_H

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <node_api.h>

static inline const char *errno_name(int error) {
  switch (error) {
#define NAME(e) \
  case e:       \
    return #e;
    NAME(EACCES) NAME(EBADF) NAME(EBUSY) NAME(EEXIST) NAME(EFAULT) NAME(EINTR) NAME(EINVAL) NAME(EIO)
    NAME(EISDIR) NAME(ELOOP) NAME(EMFILE) NAME(EMLINK) NAME(ENAMETOOLONG) NAME(ENFILE) NAME(ENODEV)
    NAME(ENOENT) NAME(ENOMEM) NAME(ENOSPC) NAME(ENOTDIR) NAME(ENOTEMPTY) NAME(ENOSYS) NAME(EOPNOTSUPP)
    NAME(EPERM) NAME(EROFS) NAME(ESTALE) NAME(EXDEV)
#undef NAME
    default:
      return "EUNKNOWN";
  }
}

static inline napi_value throw_errno(napi_env env, int error, const char *syscall) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s, %s", errno_name(error), strerror(error), syscall);
  napi_throw_error(env, errno_name(error), message);
  return NULL;
}

#define CHECK(env, call)                                             \
  do {                                                               \
    if ((call) != napi_ok) {                                         \
      napi_throw_error((env), "EINVAL", "psync addon: " #call);      \
      return NULL;                                                   \
    }                                                                \
  } while (0)

#endif
