/* progress.h - how rank 0 shows a training run's progress (README "Progress and metrics").
 *
 * On a terminal (stdout is a tty; under Open MPI, whose ranks always get a pseudo-terminal,
 * mpirun's own stdout must be one; JTRAIN_PROGRESS=bar forces it, =plain turns it off) one live
 * line per epoch is redrawn in place, at most 10 times a second:
 *     epoch 3/8 [=========>          ] 17/40 0:12<0:16 17012 samples/s | TAIL
 * and left on screen, complete, when the epoch ends; any other output first clears it
 * (jt_ui_clear). Elsewhere (SLURM logs, pipes) nothing is drawn: the trainer prints plain lines
 * at its log interval, with the elapsed time and the ETA from jt_ui_times. Times are from the
 * first step of this process (a resumed run's ETA counts only its own steps). The bar is cut to
 * the terminal's width so it never wraps. */
#ifndef JTRAIN_PROGRESS_H
#define JTRAIN_PROGRESS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    FILE *out;
    int live;                 /* drawing a bar (rank 0 on a terminal) */
    double t0;                /* when this process's first step started (jt_now) */
    uint64_t first_step, total_steps, steps_per_epoch;
    double last_draw;         /* jt_now of the last redraw */
    size_t width;             /* the terminal's columns, read once at init (live only) */
    int open;                 /* a bar is on screen without its newline */
} jt_ui;

/* rank0: only rank 0 shows anything. first_step: the run's step when this process starts. */
void jt_ui_init(jt_ui *ui, FILE *out, int rank0, uint64_t first_step, uint64_t total_steps,
                uint64_t steps_per_epoch);
/* Seconds since the first step, and the estimated seconds left at step (0 before any step). */
void jt_ui_times(const jt_ui *ui, uint64_t step, double *elapsed, double *eta);
/* "1:02:03" for an hour or more, "2:03" for a minute or more, else "12.3s". */
void jt_fmt_duration(double seconds, char *buf, size_t len);
/* 1 when live and the last redraw is 0.1 s old or more: a redraw is due. */
int jt_ui_due(const jt_ui *ui);
/* Redraws the bar for the step just finished (live only). tail: the metrics after the bar. */
void jt_ui_draw(jt_ui *ui, uint64_t step, double samples_per_s, const char *tail);
/* The epoch ended at step: the bar's last redraw with its newline (live only). */
void jt_ui_end_epoch(jt_ui *ui, uint64_t step, double samples_per_s, const char *tail);
/* Clears a bar that is on screen, so other output starts on a clean line. */
void jt_ui_clear(jt_ui *ui);

#endif
