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
            "  jtrain predict CHECKPOINT [--data FILE] [--split NAME] --out OUT.h5\n"
            "  jtrain summary CONFIG|CHECKPOINT\n"
            "  jtrain synth OUT.h5 [--train N] [--test N] [--seed S]\n"
            "  jtrain --help | --version | COMMAND --help\n"
            "Run train, eval and predict under mpirun -np N (or srun) for data parallelism.\n"
            "A CHECKPOINT is a ckpt-N.h5 file, a run folder's `latest` or `best`, or the run\n"
            "folder. The design, every config key and the file formats: docs/ (README.md).\n"
            "Exit codes: 0 ok, 2 usage/config, 3 data set, 4 checkpoint, 5 NaN/Inf, 6 ranks\n"
            "disagree, 7 a rank stalled (watchdog), 75 stopped by a signal (SIGUSR1, SIGTERM,\n"
            "SIGINT) with everything saved: requeue with --resume auto.\n");
}

/* `jtrain COMMAND --help`: the command's options. */
static const struct {
    const char *cmd, *text;
} HELP[] = {
    {"train",
     "usage: jtrain train CONFIG [--set KEY=VALUE]... [--resume auto|CHECKPOINT | --overwrite]\n"
     "Trains the model CONFIG (YAML) describes; run it under mpirun -np N for N ranks.\n"
     "Every config key with its default: README \"Config\" and docs/config.md.\n"
     "  --set KEY=VALUE  override a config key before it is checked (VALUE is YAML), e.g.\n"
     "                   --set train.optimizer.lr=3e-4 --set 'train.schedule={name: cosine}';\n"
     "                   repeatable, applied in order\n"
     "  --resume auto    continue from the newest intact checkpoint in checkpoint.dir, or\n"
     "                   start fresh when there is none\n"
     "  --resume CKPT    continue from CKPT: a ckpt-N.h5 file, a latest/best file or a run\n"
     "                   folder\n"
     "  --overwrite      start over in a checkpoint.dir that holds another run (removes its\n"
     "                   checkpoints, latest, best, status; truncates its metrics)\n"
     "Prints the resolved config, progress, and the final per-head evaluation of data.eval;\n"
     "writes checkpoints, metrics.jsonl and status into checkpoint.dir.\n"},
    {"eval",
     "usage: jtrain eval CHECKPOINT [--data FILE] [--split NAME] [--json]\n"
     "Per-head loss and accuracy of CHECKPOINT on a split (under mpirun -np N: sharded).\n"
     "  --data FILE   the data set (default: the checkpoint's data.file)\n"
     "  --split NAME  the split (default: the checkpoint's data.eval)\n"
     "  --json        one JSON object instead of a table\n"},
    {"predict",
     "usage: jtrain predict CHECKPOINT [--data FILE] [--split NAME] --out OUT.h5\n"
     "Every head's logits and predictions for every row of a split, in data-set order, into\n"
     "OUT.h5: /HEAD/logits (N, C) or (N, L, V), /HEAD/pred (N) or greedy tokens (N, L),\n"
     "attribute classes on /HEAD. The predictions are those eval counts. Under mpirun -np N\n"
     "each rank computes its shard.\n"
     "  --data FILE   the data set (default: the checkpoint's data.file)\n"
     "  --split NAME  the split (default: the checkpoint's data.eval)\n"
     "  --out OUT.h5  the output file (required; replaced atomically)\n"},
    {"summary",
     "usage: jtrain summary CONFIG|CHECKPOINT\n"
     "Blocks, heads, layers, output shapes and parameter counts of a config's or a\n"
     "checkpoint's model (single process). Output shapes need the data set's array shapes:\n"
     "without its data file, a checkpoint's summary lists its parameters instead.\n"},
    {"synth",
     "usage: jtrain synth OUT.h5 [--train N] [--test N] [--seed S]\n"
     "Writes a small synthetic multi-modal data set (image, audio, labels) for tests.\n"
     "  --train N  training rows (default 2000)\n"
     "  --test N   test rows (default 500)\n"
     "  --seed S   random seed (default 1)\n"},
};

/* 1 if argv asks for COMMAND --help (anywhere after the command): prints it. */
static int command_help(int argc, char **argv) {
    for (int i = 2; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            for (size_t k = 0; k < sizeof HELP / sizeof HELP[0]; k++)
                if (strcmp(HELP[k].cmd, argv[1]) == 0) {
                    fputs(HELP[k].text, stdout);
                    return 1;
                }
            return 0;
        }
    return 0;
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

static int cmd_predict(int argc, char **argv) {
    const char *ckpt = NULL, *data = NULL, *split = NULL, *out = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) data = argv[++i];
        else if (strcmp(argv[i], "--split") == 0 && i + 1 < argc) split = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if (argv[i][0] == '-') return usage_error("unknown option", argv[i]);
        else if (!ckpt) ckpt = argv[i];
        else return usage_error("unexpected argument", argv[i]);
    }
    if (!ckpt) return usage_error("predict needs a CHECKPOINT", NULL);
    if (!out) return usage_error("predict needs --out OUT.h5", NULL);
    return jt_predict_run(ckpt, data, split, out);
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
    if (command_help(argc, argv)) return JT_OK;
    if (strcmp(cmd, "synth") == 0) return cmd_synth(argc, argv);
    if (strcmp(cmd, "summary") == 0) {
        if (argc != 3) return usage_error("summary needs exactly one CONFIG or CHECKPOINT", NULL);
        return jt_summary_run(argv[2]);
    }
    if (strcmp(cmd, "train") != 0 && strcmp(cmd, "eval") != 0 && strcmp(cmd, "predict") != 0)
        return usage_error("unknown command", cmd);
    jt_comm_init(&argc, &argv);
    g_quiet = jt_comm_rank() != 0;
    int rc = strcmp(cmd, "train") == 0  ? cmd_train(argc, argv)
             : strcmp(cmd, "eval") == 0 ? cmd_eval(argc, argv)
                                        : cmd_predict(argc, argv);
    jt_comm_finalize();
    return rc;
}
