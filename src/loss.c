/* loss.c - fused softmax cross-entropy (torch.nn.functional.cross_entropy with
 * ignore_index = -1 and reduction "sum", times the caller's scale).
 *
 * Numerically stable: the max logit is subtracted before exp and the log-sum-exp is
 * accumulated in double, so logits of any finite size give a finite loss. */
#include "jtrain/loss.h"

#include <math.h>
#include <string.h>

#include "jtrain/common.h"

// logits: (n, C), labels: (n) -> stats; dlogits: (n, C) = scale * (softmax - onehot), 0 if masked
jt_xent_stats jt_softmax_xent(const float *logits, const int32_t *labels, size_t n, size_t C,
                              float scale, float *dlogits) {
    jt_xent_stats st = {0.0, 0, 0, 0, 0};
    JT_CHECK(C > 0, "softmax cross-entropy with 0 classes");
    for (size_t i = 0; i < n; i++) {
        const float *z = logits + i * C;
        float *dz = dlogits ? dlogits + i * C : NULL;
        int32_t y = labels[i];
        JT_CHECK(y >= -1 && (int64_t)y < (int64_t)C, "label %d of row %zu outside [-1, %zu)",
                 (int)y, i, C);
        if (y < 0) {
            if (dz) memset(dz, 0, C * sizeof(float));
            continue;
        }
        size_t arg = 0;
        for (size_t c = 1; c < C; c++)
            if (z[c] > z[arg]) arg = c;
        double zmax = z[arg], sum = 0.0;
        for (size_t c = 0; c < C; c++) sum += exp((double)z[c] - zmax);
        double lse = zmax + log(sum);
        st.loss_sum += lse - (double)z[y];
        st.labelled++;
        if (arg == (size_t)y) st.correct++;
        if (dz) {
            for (size_t c = 0; c < C; c++) {
                double p = exp((double)z[c] - lse);
                dz[c] = (float)((double)scale * (p - (c == (size_t)y ? 1.0 : 0.0)));
            }
        }
    }
    return st;
}
