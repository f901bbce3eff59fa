/*
 * psync_inotify: a minimal inotify binding for the filter.
 *
 * Why: node's fs.watch (libuv) silently drops IN_Q_OVERFLOW, so a kernel
 * queue overflow is invisible and lost changes wait for the periodic rescan.
 * This addon hands the raw bytes of read(2) on an inotify descriptor to JS,
 * which parses `struct inotify_event` itself (src/filter/watcher.ts) and so
 * sees the overflow event.
 *
 * JS API (one instance per open()):
 *   open(onData(chunk: Buffer | null, error?: string)) -> handle
 *   addWatch(handle, path: Buffer, mask: number) -> wd   throws Error, .code = errno name
 *   rmWatch(handle, wd)                                   a watch already gone is not an error
 *   close(handle)                                         idempotent; joins the reader thread
 *
 * Threads: a reader thread polls the inotify fd and a wake pipe, reads whole
 * events and pushes each read as one chunk into a thread-safe function with
 * a BOUNDED queue (QUEUE_CHUNKS) using blocking calls. While the JS loop is
 * busy the reader therefore stops reading and the kernel queue fills up to
 * fs.inotify.max_queued_events, then overflows: real backpressure, reported
 * to JS once the loop drains the queue. The tsfn is unref'd: it never keeps
 * the process alive. close() wakes the reader (pipe), aborts the tsfn (which
 * wakes a reader blocked on a full queue) and joins it before returning, so
 * the tsfn is never used after it is released.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <node_api.h>

#include "napi_errno.h"

#define READ_BUFFER_BYTES (64 * 1024)
#define QUEUE_CHUNKS 2

typedef struct {
  int fd;
  int wake[2];
  pthread_t thread;
  int thread_started;
  int closed;
  napi_env env;
  napi_threadsafe_function tsfn;
} Instance;

/* One read(2) worth of events, or a read error (error != 0, length 0). */
typedef struct {
  int error;
  size_t length;
  char bytes[];
} Chunk;

static void push_chunk(Instance *self, Chunk *chunk, int *stop) {
  if (napi_call_threadsafe_function(self->tsfn, chunk, napi_tsfn_blocking) != napi_ok) {
    free(chunk); /* napi_closing: close() aborted the queue */
    *stop = 1;
  }
}

static void *reader_main(void *arg) {
  Instance *self = arg;
  char *buffer = malloc(READ_BUFFER_BYTES);
  int stop = buffer == NULL;
  while (!stop) {
    struct pollfd fds[2] = {{self->fd, POLLIN, 0}, {self->wake[0], POLLIN, 0}};
    int error = 0;
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      error = errno;
    } else if (fds[1].revents != 0) {
      break;
    } else if (fds[0].revents != 0) {
      ssize_t n = read(self->fd, buffer, READ_BUFFER_BYTES);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        error = errno;
      } else {
        Chunk *chunk = malloc(sizeof(Chunk) + (size_t)n);
        if (chunk == NULL) {
          error = ENOMEM;
        } else {
          chunk->error = 0;
          chunk->length = (size_t)n;
          memcpy(chunk->bytes, buffer, (size_t)n);
          push_chunk(self, chunk, &stop);
        }
      }
    }
    if (error != 0) {
      /* Report once and stop reading: the JS side treats it like an overflow. */
      Chunk *chunk = malloc(sizeof(Chunk));
      if (chunk != NULL) {
        chunk->error = error;
        chunk->length = 0;
        push_chunk(self, chunk, &stop);
      }
      stop = 1;
    }
  }
  free(buffer);
  return NULL;
}

/* Runs on the JS thread; env is NULL when the tsfn is torn down with chunks still queued. */
static void deliver(napi_env env, napi_value callback, void *context, void *data) {
  (void)context;
  Chunk *chunk = data;
  if (env != NULL && callback != NULL) {
    napi_value argv[2], undefined;
    napi_get_undefined(env, &undefined);
    if (chunk->error == 0) {
      napi_create_buffer_copy(env, chunk->length, chunk->bytes, NULL, &argv[0]);
      argv[1] = undefined;
    } else {
      napi_get_null(env, &argv[0]);
      napi_create_string_utf8(env, errno_name(chunk->error), NAPI_AUTO_LENGTH, &argv[1]);
    }
    napi_call_function(env, undefined, callback, 2, argv, NULL);
  }
  free(chunk);
}

static void instance_stop(Instance *self) {
  if (self->closed) return;
  self->closed = 1;
  if (self->thread_started) {
    ssize_t ignored = write(self->wake[1], "x", 1);
    (void)ignored;
  }
  if (self->tsfn != NULL) napi_release_threadsafe_function(self->tsfn, napi_tsfn_abort);
  if (self->thread_started) pthread_join(self->thread, NULL);
  self->tsfn = NULL;
  if (self->fd >= 0) close(self->fd);
  if (self->wake[0] >= 0) close(self->wake[0]);
  if (self->wake[1] >= 0) close(self->wake[1]);
  self->fd = self->wake[0] = self->wake[1] = -1;
}

static void cleanup_hook(void *arg) {
  instance_stop(arg);
}

static void instance_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  Instance *self = data;
  if (!self->closed) {
    instance_stop(self);
    napi_remove_env_cleanup_hook(env, cleanup_hook, self);
  }
  free(self);
}

static Instance *unwrap(napi_env env, napi_value handle) {
  void *data = NULL;
  if (napi_get_value_external(env, handle, &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "EINVAL", "psync_inotify: not an inotify handle");
    return NULL;
  }
  Instance *self = data;
  if (self->closed) {
    throw_errno(env, EBADF, "inotify instance is closed");
    return NULL;
  }
  return self;
}

static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], name, handle;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) {
    napi_throw_type_error(env, "EINVAL", "open(onData) needs a callback");
    return NULL;
  }
  Instance *self = calloc(1, sizeof(Instance));
  if (self == NULL) return throw_errno(env, ENOMEM, "calloc");
  self->env = env;
  self->wake[0] = self->wake[1] = -1;
  self->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (self->fd < 0 || pipe2(self->wake, O_CLOEXEC) < 0) {
    int error = errno;
    const char *syscall = self->fd < 0 ? "inotify_init1" : "pipe2";
    instance_stop(self);
    free(self);
    return throw_errno(env, error, syscall);
  }
  if (napi_create_string_utf8(env, "psync_inotify", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_threadsafe_function(env, argv[0], NULL, name, QUEUE_CHUNKS, 1, NULL, NULL, NULL, deliver,
                                      &self->tsfn) != napi_ok) {
    instance_stop(self);
    free(self);
    napi_throw_error(env, "EINVAL", "psync_inotify: cannot create the thread-safe function");
    return NULL;
  }
  napi_unref_threadsafe_function(env, self->tsfn);
  /* The reader starts with every signal blocked: signals are for the JS thread (libuv's handlers). */
  sigset_t all, previous;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, &previous);
  int error = pthread_create(&self->thread, NULL, reader_main, self);
  pthread_sigmask(SIG_SETMASK, &previous, NULL);
  if (error != 0) {
    instance_stop(self);
    free(self);
    return throw_errno(env, error, "pthread_create");
  }
  self->thread_started = 1;
  if (napi_create_external(env, self, instance_finalize, NULL, &handle) != napi_ok) {
    instance_stop(self);
    free(self);
    napi_throw_error(env, "EINVAL", "psync_inotify: cannot create the handle");
    return NULL;
  }
  napi_add_env_cleanup_hook(env, cleanup_hook, self);
  return handle;
}

static napi_value js_add_watch(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, "EINVAL", "addWatch(handle, path, mask)");
    return NULL;
  }
  Instance *self = unwrap(env, argv[0]);
  if (self == NULL) return NULL;
  void *bytes = NULL;
  size_t length = 0;
  uint32_t mask = 0;
  if (napi_get_buffer_info(env, argv[1], &bytes, &length) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "addWatch: the path must be a Buffer");
    return NULL;
  }
  CHECK(env, napi_get_value_uint32(env, argv[2], &mask));
  char *path = malloc(length + 1);
  if (path == NULL) return throw_errno(env, ENOMEM, "malloc");
  memcpy(path, bytes, length);
  path[length] = '\0';
  int wd = memchr(path, '\0', length) != NULL ? (errno = EINVAL, -1) : inotify_add_watch(self->fd, path, mask);
  int error = errno;
  free(path);
  if (wd < 0) return throw_errno(env, error, "inotify_add_watch");
  CHECK(env, napi_create_int32(env, wd, &result));
  return result;
}

static napi_value js_rm_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  int32_t wd = -1;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2) {
    napi_throw_type_error(env, "EINVAL", "rmWatch(handle, wd)");
    return NULL;
  }
  Instance *self = unwrap(env, argv[0]);
  if (self == NULL) return NULL;
  CHECK(env, napi_get_value_int32(env, argv[1], &wd));
  /* EINVAL: the kernel already dropped it (directory deleted, unmounted); nothing to do. */
  if (inotify_rm_watch(self->fd, wd) < 0 && errno != EINVAL) return throw_errno(env, errno, "inotify_rm_watch");
  return NULL;
}

static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  void *data = NULL;
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "EINVAL", "close(handle)");
    return NULL;
  }
  Instance *self = data;
  if (!self->closed) {
    instance_stop(self);
    napi_remove_env_cleanup_hook(env, cleanup_hook, self);
  }
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"open", NULL, js_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"addWatch", NULL, js_add_watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rmWatch", NULL, js_rm_watch, NULL, NULL, NULL, napi_enumerable, NULL},
      {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties) != napi_ok) return NULL;
  return exports;
}
