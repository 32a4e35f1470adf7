/* progress.c - rank 0's live progress bar and time formatting (progress.h). */
#include "jtrain/progress.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "jtrain/common.h"

#define BAR_WIDTH 20
#define REDRAW_S 0.1

/* The parent of process pid (/proc/PID/stat, field 4), or -1. */
static long parent_of(long pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    long ppid = -1;
    if (!p || sscanf(p + 1, " %*c %ld", &ppid) != 1) return -1;
    return ppid;
}

/* Open MPI gives its ranks a pseudo-terminal for stdout whatever mpirun's own stdout is (so
 * isatty is always true under it, and the window size 0): under Open MPI the terminal that
 * counts is the launcher's. Walking up from this process past every ancestor that writes to the
 * same pseudo-terminal (wrappers mpirun started), the first one that writes elsewhere is the
 * launcher: its stdout (/proc/PID/fd/1) decides; a terminal there is /dev/pts/N or /dev/ttyN.
 * *path receives it ("" if unknown). */
static int launcher_terminal(char *path, size_t len) {
    char mine[256], link[64];
    ssize_t n = readlink("/proc/self/fd/1", mine, sizeof mine - 1);
    mine[n > 0 ? n : 0] = 0;
    path[0] = 0;
    long pid = (long)getppid();
    for (int depth = 0; depth < 16 && pid > 1; depth++, pid = parent_of(pid)) {
        snprintf(link, sizeof link, "/proc/%ld/fd/1", pid);
        n = readlink(link, path, len - 1);
        path[n > 0 ? n : 0] = 0;
        if (n <= 0 || strcmp(path, mine) != 0) break;
    }
    return strncmp(path, "/dev/pts/", 9) == 0 || strncmp(path, "/dev/tty", 8) == 0;
}

/* Columns of the terminal the bar is drawn on (the launcher's under Open MPI), else 100. */
static size_t term_width(FILE *out) {
    struct winsize ws;
    if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
    char path[256];
    if (getenv("OMPI_COMM_WORLD_SIZE") && launcher_terminal(path, sizeof path)) {
        int fd = open(path, O_WRONLY | O_NOCTTY);
        int ok = fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20;
        if (fd >= 0) close(fd);
        if (ok) return ws.ws_col;
    }
    const char *c = getenv("COLUMNS");
    long cols = c ? strtol(c, NULL, 10) : 0;
    return cols >= 20 && cols < 10000 ? (size_t)cols : 100;
}

void jt_ui_init(jt_ui *ui, FILE *out, int rank0, uint64_t first_step, uint64_t total_steps,
                uint64_t steps_per_epoch) {
    memset(ui, 0, sizeof *ui);
    ui->out = out;
    const char *mode = getenv("JTRAIN_PROGRESS");
    char path[256];
    int tty = isatty(fileno(out)) &&
              (!getenv("OMPI_COMM_WORLD_SIZE") || launcher_terminal(path, sizeof path));
    if (mode && strcmp(mode, "bar") == 0) tty = 1;
    if (mode && strcmp(mode, "plain") == 0) tty = 0;
    ui->live = rank0 && tty;
    if (ui->live) ui->width = term_width(out);
    ui->t0 = jt_now();
    ui->first_step = first_step;
    ui->total_steps = total_steps;
    ui->steps_per_epoch = steps_per_epoch ? steps_per_epoch : 1;
}

void jt_ui_times(const jt_ui *ui, uint64_t step, double *elapsed, double *eta) {
    *elapsed = jt_now() - ui->t0;
    uint64_t done = step > ui->first_step ? step - ui->first_step : 0;
    uint64_t left = ui->total_steps > step ? ui->total_steps - step : 0;
    *eta = done ? *elapsed / (double)done * (double)left : 0.0;
}

void jt_fmt_duration(double seconds, char *buf, size_t len) {
    if (!(seconds >= 0)) seconds = 0;
    if (seconds > 99.0 * 3600) seconds = 99.0 * 3600;
    if (seconds < 59.95) {
        snprintf(buf, len, "%.1fs", seconds);
        return;
    }
    long s = (long)(seconds + 0.5);
    if (s >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(buf, len, "%ld:%02ld", s / 60, s % 60);
}

/* The bar for the step just finished: its epoch (1-based) and batches done in it. */
static void draw(jt_ui *ui, uint64_t step, double sps, const char *tail) {
    uint64_t spe = ui->steps_per_epoch;
    uint64_t epoch = (step - 1) / spe + 1, in = (step - 1) % spe + 1;
    uint64_t epochs = (ui->total_steps + spe - 1) / spe;
    uint64_t in_total = epoch == epochs && ui->total_steps % spe ? ui->total_steps % spe : spe;
    char bar[BAR_WIDTH + 1];
    size_t fill = (size_t)(BAR_WIDTH * in / (in_total ? in_total : 1));
    for (size_t i = 0; i < BAR_WIDTH; i++) bar[i] = i < fill ? '=' : i == fill ? '>' : ' ';
    bar[BAR_WIDTH] = 0;
    double elapsed, eta;
    jt_ui_times(ui, step, &elapsed, &eta);
    char e[32], r[32], line[1024];
    jt_fmt_duration(elapsed, e, sizeof e);
    jt_fmt_duration(eta, r, sizeof r);
    snprintf(line, sizeof line, "epoch %llu/%llu [%s] %llu/%llu %s<%s %.0f samples/s%s",
             (unsigned long long)epoch, (unsigned long long)epochs, bar, (unsigned long long)in,
             (unsigned long long)in_total, e, r, sps, tail ? tail : "");
    size_t w = ui->width - 1;
    if (strlen(line) > w) line[w] = 0;
    fprintf(ui->out, "\r\033[K%s", line);
    fflush(ui->out);
    ui->open = 1;
    ui->last_draw = jt_now();
}

int jt_ui_due(const jt_ui *ui) { return ui->live && jt_now() - ui->last_draw >= REDRAW_S; }

void jt_ui_draw(jt_ui *ui, uint64_t step, double samples_per_s, const char *tail) {
    if (!ui->live || step == 0) return;
    draw(ui, step, samples_per_s, tail);
}

void jt_ui_end_epoch(jt_ui *ui, uint64_t step, double samples_per_s, const char *tail) {
    if (!ui->live || step == 0) return;
    draw(ui, step, samples_per_s, tail);
    fputc('\n', ui->out);
    fflush(ui->out);
    ui->open = 0;
}

void jt_ui_clear(jt_ui *ui) {
    if (!ui->live || !ui->open) return;
    fputs("\r\033[K", ui->out);
    fflush(ui->out);
    ui->open = 0;
}
