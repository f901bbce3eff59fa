{
  "targets": [
    {
      "target_name": "psync_inotify",
      "sources": ["native/inotify.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"]
    }
  ]
}
