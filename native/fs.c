/*
 * psync_fs: the system calls of psync's symlink-safe file layer
 * (src/fs/directory.ts), which node's fs does not offer.
 *
 * Every operation is relative to a directory descriptor and names ONE
 * component: a name with a '/' or a NUL, "", "." or ".." is refused with
 * EINVAL before any system call. Nothing here follows a symlink: directories
 * are opened with O_NOFOLLOW | O_DIRECTORY, files with O_NOFOLLOW, stats are
 * AT_SYMLINK_NOFOLLOW. So a path is walked one held directory at a time from
 * the root, and a component that an attacker swaps for a symlink between a
 * check and an act makes the act fail (ELOOP, ENOTDIR) instead of reaching
 * outside the tree (rsync's secure_relative_open and Mutagen's Directory do
 * the same).
 *
 * JS API (synchronous; errors are thrown as Error with .code = errno name):
 *   openRoot(path: Buffer) -> fd         the operator's root: the one open that may follow links
 *   openDir(dirfd, name) -> fd           O_RDONLY | O_DIRECTORY | O_NOFOLLOW
 *   openFile(dirfd, name, flags, mode) -> fd   flags | O_NOFOLLOW | O_CLOEXEC
 *   stat(dirfd, name, out) -> bool       statx, AT_SYMLINK_NOFOLLOW, into a Float64Array; false: ENOENT;
 *                                        name "" is the descriptor itself (AT_EMPTY_PATH: any open
 *                                        file, so this is also psync's fstat)
 *   rename(fromfd, from, tofd, to, flags)  renameat2; flags 1 = RENAME_NOREPLACE, 2 = RENAME_EXCHANGE
 *   unlink(dirfd, name, isDir)           unlinkat, AT_REMOVEDIR when isDir
 *   mkdir(dirfd, name, mode)             mkdirat
 *   readlink(dirfd, name) -> Buffer      readlinkat: a symlink's target bytes, never followed
 *   readdir(dirfd) -> { names: Buffer[], types: number[] }   d_type per name (0 = unknown)
 * Descriptors are closed with node's fs.closeSync; every one is O_CLOEXEC.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <node_api.h>

#include "napi_errno.h"

#define MAX_ARGS 5

/* The arguments of one call, converted; a failed conversion has already thrown. */
typedef struct {
  napi_value argv[MAX_ARGS];
  size_t argc;
} Args;

static int get_args(napi_env env, napi_callback_info info, Args *args, size_t needed, const char *usage) {
  args->argc = MAX_ARGS;
  if (napi_get_cb_info(env, info, &args->argc, args->argv, NULL, NULL) != napi_ok || args->argc < needed) {
    napi_throw_type_error(env, "EINVAL", usage);
    return 0;
  }
  return 1;
}

static int get_int(napi_env env, napi_value value, int32_t *out) {
  if (napi_get_value_int32(env, value, out) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "psync_fs: expected an integer");
    return 0;
  }
  return 1;
}

/* Copy a Buffer into `out` (size `room`) as a C string; NUL bytes inside are refused. */
static int get_bytes(napi_env env, napi_value value, char *out, size_t room) {
  void *bytes = NULL;
  size_t length = 0;
  if (napi_get_buffer_info(env, value, &bytes, &length) != napi_ok) {
    napi_throw_type_error(env, "EINVAL", "psync_fs: expected a Buffer");
    return 0;
  }
  if (length >= room) {
    throw_errno(env, ENAMETOOLONG, "psync_fs");
    return 0;
  }
  if (length > 0 && memchr(bytes, '\0', length) != NULL) {
    throw_errno(env, EINVAL, "psync_fs: NUL in a name");
    return 0;
  }
  memcpy(out, bytes, length);
  out[length] = '\0';
  return 1;
}

/* One path component. `allow_empty` lets "" stand for the directory itself (stat only). */
static int get_name(napi_env env, napi_value value, char out[NAME_MAX + 1], int allow_empty) {
  if (!get_bytes(env, value, out, NAME_MAX + 1)) return 0;
  if ((out[0] == '\0' && !allow_empty) || strchr(out, '/') != NULL || strcmp(out, ".") == 0 || strcmp(out, "..") == 0) {
    throw_errno(env, EINVAL, "psync_fs: not a single path component");
    return 0;
  }
  return 1;
}

/* The common start of most calls: (dirfd, name, ...) with at least `needed` arguments. */
static int get_dir_name(napi_env env, napi_callback_info info, Args *a, size_t needed, const char *usage, int32_t *dirfd,
                        char name[NAME_MAX + 1], int allow_empty) {
  return get_args(env, info, a, needed, usage) && get_int(env, a->argv[0], dirfd) && get_name(env, a->argv[1], name, allow_empty);
}

static napi_value make_int(napi_env env, int64_t value) {
  napi_value result = NULL;
  napi_create_int64(env, value, &result);
  return result;
}

static napi_value js_open_root(napi_env env, napi_callback_info info) {
  Args a;
  char path[PATH_MAX];
  if (!get_args(env, info, &a, 1, "openRoot(path)") || !get_bytes(env, a.argv[0], path, sizeof path)) return NULL;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "open");
  return make_int(env, fd);
}

static napi_value js_open_dir(napi_env env, napi_callback_info info) {
  Args a;
  int32_t dirfd;
  char name[NAME_MAX + 1];
  if (!get_dir_name(env, info, &a, 2, "openDir(dirfd, name)", &dirfd, name, 0))
    return NULL;
  int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "openat");
  return make_int(env, fd);
}

static napi_value js_open_file(napi_env env, napi_callback_info info) {
  Args a;
  int32_t dirfd, flags, mode;
  char name[NAME_MAX + 1];
  if (!get_dir_name(env, info, &a, 4, "openFile(dirfd, name, flags, mode)", &dirfd, name, 0) || !get_int(env, a.argv[2], &flags) ||
      !get_int(env, a.argv[3], &mode))
    return NULL;
  int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
  if (fd < 0) return throw_errno(env, errno, "openat");
  return make_int(env, fd);
}

/* The order of the numbers stat() writes; src/fs/directory.ts reads them by the same indexes. */
enum { ST_MODE, ST_SIZE, ST_INO, ST_DEV, ST_UID, ST_MTIME_SEC, ST_MTIME_NSEC, ST_BIRTH_SEC, ST_BIRTH_NSEC, ST_COUNT };

/*
 * stat(dirfd, name, out: Float64Array(ST_COUNT)) -> bool: false when there is
 * no such entry (ENOENT), else the numbers are in `out`. Writing into a
 * caller's array instead of building an object keeps the filter's scan of a
 * big tree cheap.
 */
static napi_value js_stat(napi_env env, napi_callback_info info) {
  Args a;
  int32_t dirfd;
  char name[NAME_MAX + 1];
  if (!get_dir_name(env, info, &a, 3, "stat(dirfd, name, out)", &dirfd, name, 1))
    return NULL;
  napi_typedarray_type type;
  size_t length = 0;
  void *data = NULL;
  if (napi_get_typedarray_info(env, a.argv[2], &type, &length, &data, NULL, NULL) != napi_ok || type != napi_float64_array ||
      length < ST_COUNT) {
    napi_throw_type_error(env, "EINVAL", "stat: out must be a Float64Array of ST_COUNT numbers");
    return NULL;
  }
  struct statx sx;
  int flags = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | (name[0] == '\0' ? AT_EMPTY_PATH : 0);
  napi_value found;
  if (statx(dirfd, name, flags, STATX_BASIC_STATS | STATX_BTIME, &sx) < 0) {
    if (errno != ENOENT) return throw_errno(env, errno, "statx");
    CHECK(env, napi_get_boolean(env, false, &found));
    return found;
  }
  double *out = data;
  out[ST_MODE] = sx.stx_mode;
  out[ST_SIZE] = (double)sx.stx_size;
  out[ST_INO] = (double)sx.stx_ino;
  out[ST_DEV] = (double)makedev(sx.stx_dev_major, sx.stx_dev_minor);
  out[ST_UID] = sx.stx_uid;
  out[ST_MTIME_SEC] = (double)sx.stx_mtime.tv_sec;
  out[ST_MTIME_NSEC] = sx.stx_mtime.tv_nsec;
  /* 0 where the file system keeps no birth time */
  out[ST_BIRTH_SEC] = (sx.stx_mask & STATX_BTIME) ? (double)sx.stx_btime.tv_sec : 0;
  out[ST_BIRTH_NSEC] = (sx.stx_mask & STATX_BTIME) ? sx.stx_btime.tv_nsec : 0;
  CHECK(env, napi_get_boolean(env, true, &found));
  return found;
}

static napi_value js_rename(napi_env env, napi_callback_info info) {
  Args a;
  int32_t fromfd, tofd, flags;
  char from[NAME_MAX + 1], to[NAME_MAX + 1];
  if (!get_args(env, info, &a, 5, "rename(fromfd, from, tofd, to, flags)") || !get_int(env, a.argv[0], &fromfd) ||
      !get_name(env, a.argv[1], from, 0) || !get_int(env, a.argv[2], &tofd) || !get_name(env, a.argv[3], to, 0) ||
      !get_int(env, a.argv[4], &flags))
    return NULL;
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) != 0) return throw_errno(env, EINVAL, "rename: unknown flags");
  if (renameat2(fromfd, from, tofd, to, (unsigned)flags) < 0) return throw_errno(env, errno, "renameat2");
  return NULL;
}

static napi_value js_unlink(napi_env env, napi_callback_info info) {
  Args a;
  int32_t dirfd;
  bool is_dir = false;
  char name[NAME_MAX + 1];
  if (!get_dir_name(env, info, &a, 3, "unlink(dirfd, name, isDir)", &dirfd, name, 0))
    return NULL;
  CHECK(env, napi_get_value_bool(env, a.argv[2], &is_dir));
  if (unlinkat(dirfd, name, is_dir ? AT_REMOVEDIR : 0) < 0) return throw_errno(env, errno, "unlinkat");
  return NULL;
}

static napi_value js_mkdir(napi_env env, napi_callback_info info) {
  Args a;
  int32_t dirfd, mode;
  char name[NAME_MAX + 1];
  if (!get_dir_name(env, info, &a, 3, "mkdir(dirfd, name, mode)", &dirfd, name, 0) || !get_int(env, a.argv[2], &mode))
    return NULL;
  if (mkdirat(dirfd, name, (mode_t)mode) < 0) return throw_errno(env, errno, "mkdirat");
  return NULL;
}

/*
 * readlink(dirfd, name) -> Buffer: the target of the symlink `name`, as
 * bytes (it may name anything; it is data to hash or compare, never a path
 * psync opens). Not a symlink: EINVAL, as readlinkat says.
 */
static napi_value js_readlink(napi_env env, napi_callback_info info) {
  Args a;
  int32_t dirfd;
  char name[NAME_MAX + 1], target[PATH_MAX];
  if (!get_dir_name(env, info, &a, 2, "readlink(dirfd, name)", &dirfd, name, 0)) return NULL;
  ssize_t n = readlinkat(dirfd, name, target, sizeof target);
  if (n < 0) return throw_errno(env, errno, "readlinkat");
  if ((size_t)n >= sizeof target) return throw_errno(env, ENAMETOOLONG, "readlinkat");
  napi_value result;
  CHECK(env, napi_create_buffer_copy(env, (size_t)n, target, NULL, &result));
  return result;
}

static napi_value js_readdir(napi_env env, napi_callback_info info) {
  Args a;
  int32_t dirfd;
  if (!get_args(env, info, &a, 1, "readdir(dirfd)") || !get_int(env, a.argv[0], &dirfd)) return NULL;
  int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, errno, "openat");
  DIR *dir = fdopendir(fd);
  if (dir == NULL) {
    int error = errno;
    close(fd);
    return throw_errno(env, error, "fdopendir");
  }
  napi_value names, types, result;
  if (napi_create_array(env, &names) != napi_ok || napi_create_array(env, &types) != napi_ok ||
      napi_create_object(env, &result) != napi_ok) {
    closedir(dir);
    napi_throw_error(env, "EINVAL", "psync_fs: cannot build the listing");
    return NULL;
  }
  uint32_t count = 0;
  int error = 0;
  for (;;) {
    errno = 0;
    struct dirent *entry = readdir(dir);
    if (entry == NULL) {
      error = errno;
      break;
    }
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
    napi_value name, type;
    if (napi_create_buffer_copy(env, strlen(entry->d_name), entry->d_name, NULL, &name) != napi_ok ||
        napi_create_uint32(env, entry->d_type, &type) != napi_ok || napi_set_element(env, names, count, name) != napi_ok ||
        napi_set_element(env, types, count, type) != napi_ok) {
      error = ENOMEM;
      break;
    }
    count++;
  }
  closedir(dir);
  if (error != 0) return throw_errno(env, error, "readdir");
  if (napi_set_named_property(env, result, "names", names) != napi_ok ||
      napi_set_named_property(env, result, "types", types) != napi_ok) {
    napi_throw_error(env, "EINVAL", "psync_fs: cannot build the listing");
    return NULL;
  }
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor properties[] = {
      {"openRoot", NULL, js_open_root, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openDir", NULL, js_open_dir, NULL, NULL, NULL, napi_enumerable, NULL},
      {"openFile", NULL, js_open_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"stat", NULL, js_stat, NULL, NULL, NULL, napi_enumerable, NULL},
      {"rename", NULL, js_rename, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unlink", NULL, js_unlink, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mkdir", NULL, js_mkdir, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readlink", NULL, js_readlink, NULL, NULL, NULL, napi_enumerable, NULL},
      {"readdir", NULL, js_readdir, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof properties / sizeof properties[0], properties) != napi_ok) return NULL;
  return exports;
}
