/*
 * The spatial convolutions of ECMA's LAMs (Eq. 1, 2 and 5) at inference, for ecma_fuse.py.
 *
 * One call computes, for each output channel o of a range, the grouped 'same' convolution
 *
 *     out[o] = bias[o] + sum_t conv(input_t(o), weight[o, t])
 *
 * where the inputs of group o are channel o of `prev` (O'_{i-1} of the cascade, if given) followed
 * by channels o*r .. o*r+r-1 of `raw` (I'_i): the order of cascade_context, without building the
 * interleaved concatenation. A depthwise conv is the case r = 1 without `prev`. Optionally the
 * finished rows are combined with another map (Q's product or sum branch of Eq. 3) while they are
 * still in cache.
 *
 * Each input plane streams through a ring of k zero-padded rows, so the zero padding costs no
 * padded copy of the map and every output row is written once per term.
 * Maps are float32, planes contiguous (H*W) and channels H*W apart; batches may be any stride.
 */
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

typedef void (*taps_fn)(float *restrict y, const float *const *rows, const float *restrict w, int64_t width, int k);

/* all k x k taps of one output row, j the vector dimension (the taps unroll for a fixed K) */
#define DEFINE_TAPS(K)                                                                         \
    static void taps_##K(float *restrict y, const float *const *rows, const float *restrict w,   \
                         int64_t width, int k) {                                               \
        (void)k;                                                                               \
        _Pragma("omp simd")                                                                    \
        for (int64_t j = 0; j < width; ++j) {                                                  \
            float a = y[j];                                                                    \
            for (int di = 0; di < K; ++di)                                                     \
                for (int dj = 0; dj < K; ++dj) a += w[di * K + dj] * rows[di][j + dj];         \
            y[j] = a;                                                                          \
        }                                                                                      \
    }
DEFINE_TAPS(3)
DEFINE_TAPS(5)
DEFINE_TAPS(7)

static void taps_any(float *restrict y, const float *const *rows, const float *restrict w, int64_t width, int k) {
    for (int di = 0; di < k; ++di) {
        const float *restrict row = rows[di];
        const float *restrict wr = w + di * k;
        for (int64_t j = 0; j < width; ++j) {
            float a = y[j];
            for (int dj = 0; dj < k; ++dj) a += wr[dj] * row[j + dj];
            y[j] = a;
        }
    }
}

/* Returns 0, or -1 when the row buffers cannot be allocated (nothing is written then). */
int ecma_grouped_conv(int64_t batch, int64_t o_begin, int64_t o_end, int64_t height, int64_t width, int32_t k,
                      const float *prev, int64_t prev_bs, const float *raw, int64_t raw_bs, int32_t r,
                      const float *weight, const float *bias, float *out, int64_t out_bs,
                      const float *other, int64_t other_bs, float *comb, int64_t comb_bs, int32_t comb_op) {
    const int terms = r + (prev != NULL);
    const int before = (k - 1) / 2, after = k - 1 - before; /* PyTorch's 'same' padding */
    const int64_t padded = width + k - 1, plane = height * width;
    taps_fn taps = k == 3 ? taps_3 : k == 5 ? taps_5 : k == 7 ? taps_7 : taps_any;
    if (k % 2 == 0) taps = taps_any; /* the specialisations assume before == after */

    float *ring = malloc(sizeof(float) * ((size_t)terms * k * padded + padded));
    const float **rows = malloc(sizeof(float *) * (size_t)k);
    if (ring == NULL || rows == NULL) {
        free(ring);
        free((void *)rows);
        return -1;
    }
    float *zero_row = ring + (size_t)terms * k * padded;

    for (int64_t b = 0; b < batch; ++b) {
        for (int64_t o = o_begin; o < o_end; ++o) {
            float *y = out + b * out_bs + o * plane;
            const float *w = weight + o * terms * k * k;
            const float bias_o = bias != NULL ? bias[o] : 0.0f;
            memset(ring, 0, sizeof(float) * ((size_t)terms * k * padded + padded));
            for (int64_t i = 0; i < height; ++i) {
                float *yr = y + i * width;
                for (int64_t j = 0; j < width; ++j) yr[j] = bias_o;
                for (int t = 0; t < terms; ++t) {
                    const float *src = t == 0 && prev != NULL ? prev + b * prev_bs + o * plane
                                                              : raw + b * raw_bs + (o * r + t - (prev != NULL)) * plane;
                    float *tring = ring + (size_t)t * k * padded;
                    /* row s sits in slot s % k: rows i - before .. i + after are k consecutive rows */
                    for (int64_t s = i == 0 ? 0 : i + after; s <= i + after && s < height; ++s)
                        memcpy(tring + (s % k) * padded + before, src + s * width, sizeof(float) * width);
                    for (int di = 0; di < k; ++di) {
                        const int64_t s = i - before + di;
                        rows[di] = s >= 0 && s < height ? tring + (s % k) * padded : zero_row;
                    }
                    taps(yr, rows, w + t * k * k, width, k);
                }
                if (comb != NULL) {
                    const float *xr = other + b * other_bs + o * plane + i * width;
                    float *cr = comb + b * comb_bs + o * plane + i * width;
                    if (comb_op == 0)
                        for (int64_t j = 0; j < width; ++j) cr[j] = yr[j] * xr[j];
                    else
                        for (int64_t j = 0; j < width; ++j) cr[j] = yr[j] + xr[j];
                }
            }
        }
    }
    free(ring);
    free((void *)rows);
    return 0;
}

/*
 * The channel LayerNorm of the gated FFN (no affine: it is folded into the next conv) over one
 * tile of pixels: y[c][j] = (x[c][j] - mean_j) / sqrt(var_j + eps), mean and biased variance over
 * the `channels` rows of column j, in two passes (no E[x^2] - E[x]^2 cancellation). x rows are
 * `ldx` floats apart, y is dense. Returns 0, or -1 when the column buffer cannot be allocated.
 */
int ecma_channel_norm(int64_t channels, int64_t n, const float *x, int64_t ldx, float *y, float eps) {
    float *acc = malloc(sizeof(float) * (size_t)n);
    if (acc == NULL) return -1;
    const float inv = 1.0f / (float)channels;
    for (int64_t j = 0; j < n; ++j) acc[j] = 0.0f;
    for (int64_t c = 0; c < channels; ++c) {
        const float *restrict xr = x + c * ldx;
        for (int64_t j = 0; j < n; ++j) acc[j] += xr[j];
    }
    for (int64_t j = 0; j < n; ++j) acc[j] *= inv; /* mean */
    for (int64_t c = 0; c < channels; ++c) {
        const float *restrict xr = x + c * ldx;
        float *restrict yr = y + c * n;
        for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] - acc[j];
    }
    for (int64_t j = 0; j < n; ++j) acc[j] = 0.0f;
    for (int64_t c = 0; c < channels; ++c) {
        const float *restrict yr = y + c * n;
        for (int64_t j = 0; j < n; ++j) acc[j] += yr[j] * yr[j];
    }
    for (int64_t j = 0; j < n; ++j) acc[j] = 1.0f / sqrtf(acc[j] * inv + eps);
    for (int64_t c = 0; c < channels; ++c) {
        float *restrict yr = y + c * n;
        for (int64_t j = 0; j < n; ++j) yr[j] *= acc[j];
    }
    free(acc);
    return 0;
}

/*
 * Mean and biased variance of each of `groups` contiguous runs of `length` floats (GroupNorm's
 * statistics of Q without its output pass): every chunk of `chunk` floats, in cache, gets its
 * mean and sum of squared deviations in two passes, and the chunks are merged in double
 * (Chan et al.'s pairwise rule), so a mean far from zero costs no precision.
 */
void ecma_group_moments(int64_t groups, int64_t length, const float *x, int64_t chunk, float *mean, float *var) {
    for (int64_t g = 0; g < groups; ++g) {
        const float *xg = x + g * length;
        double n = 0.0, m = 0.0, m2 = 0.0;
        for (int64_t s = 0; s < length; s += chunk) {
            const int64_t len = length - s < chunk ? length - s : chunk;
            const float *restrict xc = xg + s;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int64_t j = 0; j < len; ++j) sum += xc[j];
            const float cm = sum / (float)len;
            float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
            for (int64_t j = 0; j < len; ++j) sq += (xc[j] - cm) * (xc[j] - cm);
            const double nb = (double)len, delta = (double)cm - m, total = n + nb;
            m += delta * nb / total;
            m2 += (double)sq + delta * delta * n * nb / total;
            n = total;
        }
        mean[g] = (float)m;
        var[g] = (float)(m2 / n);
    }
}
