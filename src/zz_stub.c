#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "jtrain/ckpt.h"
jt_status jt_ckpt_resolve(const char *path, char *out, size_t outlen, char *err, size_t errlen) {
    struct stat sb;
    const char *b = strrchr(path, '/'); b = b ? b + 1 : path;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) return jt_ckpt_latest(path, out, outlen, err, errlen);
    if (strcmp(b, "latest") == 0) { char d[1024]; snprintf(d, sizeof d, "%.*s", (int)(b - path) - 1, path); if (!d[0]) strcpy(d, "."); return jt_ckpt_latest(d, out, outlen, err, errlen); }
    snprintf(out, outlen, "%s", path); return JT_OK;
}
jt_status jt_ckpt_find_resumable(const char *dir, jt_params *p, jt_ckpt_state *st, int verbose,
                                 char *path_out, size_t path_len, char *err, size_t errlen) {
    (void)verbose;
    jt_status s = jt_ckpt_latest(dir, path_out, path_len, err, errlen);
    if (s != JT_OK || !path_out[0]) return s;
    return jt_ckpt_load(path_out, p, st, err, errlen);
}
int jt_ckpt_clean_stale(const char *dir) { (void)dir; return 0; }
int jt_ckpt_scan(const char *dir, unsigned long long *newest) {
    DIR *d = opendir(dir); int n = 0; *newest = 0; if (!d) return 0; struct dirent *e;
    while ((e = readdir(d))) { unsigned long long s; if (sscanf(e->d_name, "ckpt-%llu.h5", &s) == 1) { n++; if (s > *newest) *newest = s; } }
    closedir(d); return n;
}
jt_status jt_ckpt_remove_all(const char *dir, char *err, size_t errlen) {
    (void)err; (void)errlen;
    DIR *d = opendir(dir); if (!d) return JT_OK; struct dirent *e; char p[2048];
    while ((e = readdir(d))) { unsigned long long s; if (sscanf(e->d_name, "ckpt-%llu.h5", &s) == 1 || !strcmp(e->d_name, "latest") || !strcmp(e->d_name, "status")) { snprintf(p, sizeof p, "%s/%s", dir, e->d_name); unlink(p); } }
    closedir(d); return JT_OK;
}
