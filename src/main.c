/* main.c - the command line: parses arguments and hands each command to its module. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jtrain/comm.h"
#include "jtrain/data.h"
#include "jtrain/train.h"

static void usage(FILE *out) {
    fprintf(out,
            "usage:\n"
            "  jtrain train CONFIG [--set KEY=VALUE]... [--resume auto|CHECKPOINT | --overwrite]\n"
            "  jtrain eval CHECKPOINT [--data FILE] [--split NAME] [--json]\n"
            "  jtrain summary CONFIG|CHECKPOINT\n"
            "  jtrain synth OUT.h5 [--train N] [--test N] [--seed S]\n"
            "  jtrain --help | --version\n"
            "Run train and eval under mpirun -np N (or srun) for data-parallel training.\n"
            "A CHECKPOINT is a ckpt-N.h5 file, a run folder's `latest` or the run folder.\n"
            "Exit codes: 0 ok, 2 usage/config, 3 data set, 4 checkpoint, 5 NaN/Inf, 6 ranks\n"
            "disagree, 7 a rank stalled (watchdog), 75 stopped by a signal (SIGUSR1, SIGTERM,\n"
            "SIGINT) with everything saved: requeue with --resume auto.\n");
}

/* Under MPI every rank parses the same arguments: only rank 0 reports. */
static int g_quiet = 0;

static int usage_error(const char *what, const char *arg) {
    if (!g_quiet) jt_errorf("%s%s%s (see jtrain --help)", what, arg ? ": " : "", arg ? arg : "");
    return JT_EUSAGE;
}

static int cmd_train(int argc, char **argv) {
    jt_train_args a = {0};
    const char **sets = calloc((size_t)argc, sizeof *sets);
    int rc = JT_OK;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) sets[a.n_sets++] = argv[++i];
        else if (strncmp(argv[i], "--set=", 6) == 0) sets[a.n_sets++] = argv[i] + 6;
        else if (strcmp(argv[i], "--resume") == 0 && i + 1 < argc) a.resume = argv[++i];
        else if (strcmp(argv[i], "--overwrite") == 0) a.overwrite = 1;
        else if (argv[i][0] == '-' && argv[i][1]) { rc = usage_error("unknown option", argv[i]); break; }
        else if (!a.config_path) a.config_path = argv[i];
        else { rc = usage_error("unexpected argument", argv[i]); break; }
    }
    if (rc == JT_OK && !a.config_path) rc = usage_error("train needs a CONFIG", NULL);
    if (rc == JT_OK && a.resume && a.overwrite)
        rc = usage_error("--resume and --overwrite exclude each other", NULL);
    a.sets = sets;
    if (rc == JT_OK) rc = jt_train_run(&a);
    free(sets);
    return rc;
}

static int cmd_eval(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *split = NULL;
    int json = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) data = argv[++i];
        else if (strcmp(argv[i], "--split") == 0 && i + 1 < argc) split = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (argv[i][0] == '-') return usage_error("unknown option", argv[i]);
        else if (!ckpt) ckpt = argv[i];
        else return usage_error("unexpected argument", argv[i]);
    }
    if (!ckpt) return usage_error("eval needs a CHECKPOINT", NULL);
    return jt_eval_run(ckpt, data, split, json);
}

static int cmd_synth(int argc, char **argv) {
    const char *out = NULL;
    long ntrain = 2000, ntest = 500, seed = 1;
    for (int i = 2; i < argc; i++) {
        long *dst = NULL;
        if (strcmp(argv[i], "--train") == 0) dst = &ntrain;
        else if (strcmp(argv[i], "--test") == 0) dst = &ntest;
        else if (strcmp(argv[i], "--seed") == 0) dst = &seed;
        else if (argv[i][0] == '-') return usage_error("unknown option", argv[i]);
        else if (!out) { out = argv[i]; continue; }
        else return usage_error("unexpected argument", argv[i]);
        if (i + 1 >= argc || jt_parse_long(argv[i + 1], dst == &seed ? 0 : 1, 100000000L, dst))
            return usage_error("expected a positive integer after", argv[i]);
        i++;
    }
    if (!out) return usage_error("synth needs OUT.h5", NULL);
    char err[2048] = "";
    jt_status st = jt_synth_write(out, (size_t)ntrain, (size_t)ntest, (uint64_t)seed, err,
                                  sizeof err);
    if (st != JT_OK) jt_errorf("%s", err);
    else printf("wrote %s: %ld train + %ld test samples (seed %ld)\n", out, ntrain, ntest, seed);
    return st;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return JT_EUSAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return JT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("jtrain %s\n", JT_VERSION);
        return JT_OK;
    }
    if (strcmp(cmd, "synth") == 0) return cmd_synth(argc, argv);
    if (strcmp(cmd, "summary") == 0) {
        if (argc != 3) return usage_error("summary needs exactly one CONFIG or CHECKPOINT", NULL);
        return jt_summary_run(argv[2]);
    }
    if (strcmp(cmd, "train") != 0 && strcmp(cmd, "eval") != 0)
        return usage_error("unknown command", cmd);
    jt_comm_init(&argc, &argv);
    g_quiet = jt_comm_rank() != 0;
    int rc = strcmp(cmd, "train") == 0 ? cmd_train(argc, argv) : cmd_eval(argc, argv);
    jt_comm_finalize();
    return rc;
}
