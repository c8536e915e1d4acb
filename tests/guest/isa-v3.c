/* A user program for the x86-64-v3 level, built static with -march=x86-64-v3 by
 * tests/integration/cpu-models.sh and run on the host and in a guest: the printed digest must be
 * the same. AVX (256-bit float), AVX2 (256-bit integer, broadcasts, permutes across lanes,
 * variable shifts, masked loads), FMA and F16C through intrinsics (so each is certainly in the
 * binary), loops the compiler vectorizes with them, and glibc's string functions, which pick
 * their AVX2 forms when CPUID and XGETBV say AVX2 and the YMM state are there. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint32_t words[4096];
static float floats[2048];
static double doubles[2048];
static char text[65536];

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static uint64_t fold(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t k = 0; k < n; k++)
        h = (h ^ b[k]) * 0x100000001b3ull;
    return h;
}

int main(void)
{
    for (int k = 0; k < 4096; k++)
        words[k] = (uint32_t)next();
    for (int k = 0; k < 2048; k++) {
        floats[k] = (float)(int32_t)next() / 65536.0f;
        doubles[k] = (double)(int64_t)next() / 4294967296.0;
    }
    for (size_t k = 0; k < sizeof(text) - 1; k++)
        text[k] = (char)('a' + next() % 26);

    /* AVX2 integers */
    __m256i acc = _mm256_setzero_si256(), idx = _mm256_setr_epi32(7, 3, 5, 1, 0, 2, 6, 4);
    __m256i cnt = _mm256_setr_epi32(1, 5, 9, 13, 17, 21, 25, 31);
    for (int k = 0; k + 8 <= 4096; k += 8) {
        __m256i v = _mm256_loadu_si256((const __m256i *)&words[k]);
        v = _mm256_permutevar8x32_epi32(v, idx);
        v = _mm256_xor_si256(v, _mm256_sllv_epi32(acc, cnt));
        v = _mm256_add_epi32(v, _mm256_srav_epi32(acc, cnt));
        acc = _mm256_add_epi32(_mm256_mullo_epi32(acc, _mm256_set1_epi32(k | 1)), v);
        acc = _mm256_max_epu32(acc, _mm256_shuffle_epi8(v, _mm256_broadcastsi128_si256(_mm256_castsi256_si128(acc))));
        acc = _mm256_permute4x64_epi64(acc, 0x4e);
        acc = _mm256_blend_epi32(acc, _mm256_permute2x128_si256(acc, v, 0x21), 0x5a);
        acc = _mm256_sub_epi64(acc, _mm256_cvtepu16_epi64(_mm256_extracti128_si256(v, 1)));
        acc = _mm256_xor_si256(acc, _mm256_maskload_epi32((const int *)&words[(k + 8) & 4095], v));
    }
    uint32_t mask = (uint32_t)_mm256_movemask_epi8(_mm256_cmpgt_epi8(acc, _mm256_set1_epi8(3)));

    /* AVX floats, FMA, F16C */
    __m256 fs = _mm256_setzero_ps();
    __m256d ds = _mm256_set1_pd(1.0);
    for (int k = 0; k + 8 <= 2048; k += 8) {
        __m256 a = _mm256_loadu_ps(&floats[k]);
        fs = _mm256_fmadd_ps(a, _mm256_broadcast_ss(&floats[k / 8]), fs);
        fs = _mm256_hadd_ps(fs, _mm256_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));
        fs = _mm256_blendv_ps(fs, _mm256_sqrt_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.0f), a)), a);
        fs = _mm256_cvtph_ps(_mm256_cvtps_ph(fs, _MM_FROUND_TO_NEAREST_INT));
        __m256d d = _mm256_loadu_pd(&doubles[k / 2]);
        ds = _mm256_fmsub_pd(ds, _mm256_set1_pd(0.5), d);
        ds = _mm256_fnmadd_pd(d, _mm256_permute_pd(ds, 5), ds);
        ds = _mm256_min_pd(_mm256_max_pd(ds, _mm256_set1_pd(-1e9)), _mm256_set1_pd(1e9));
    }
    float fo[8];
    double dout[4];
    _mm256_storeu_ps(fo, fs);
    _mm256_storeu_pd(dout, ds);

    /* vectorized by the compiler for the level */
    int64_t dot = 0;
    float fdot = 0;
    for (int k = 0; k < 4096; k++)
        dot += (int64_t)(int32_t)words[k] * (words[(k * 7) & 4095] & 0xffff);
    for (int k = 0; k < 2048; k++)
        fdot += floats[k] * floats[2047 - k];

    /* glibc's AVX2 string functions */
    uint64_t h = 0xcbf29ce484222325ull;
    static char copy[65536];
    for (int k = 0; k < 64; k++) {
        size_t off = next() % 60000;
        text[off + 100 + k] = 0;
        h ^= strlen(text + off);
        memcpy(copy, text + off, 3000 + k);
        h = fold(h, copy + 2900, 100);
        const char *p = memchr(text + off, 'q', 4000);
        h ^= p ? (uint64_t)(p - text) : 7;
        h ^= (uint64_t)memcmp(copy, text + off + 1, 200) << 7;
        text[off + 100 + k] = 'x';
        p = strchr(text + off, 'z');
        h ^= p ? (uint64_t)(p - text) << 3 : 9;
    }

    uint64_t digest = fold(0xcbf29ce484222325ull, &acc, sizeof(acc));
    digest = fold(digest, fo, sizeof(fo));
    digest = fold(digest, dout, sizeof(dout));
    printf("isa-v3: %016llx %08x %lld %a %016llx\n", (unsigned long long)digest, mask, (long long)dot,
           (double)fdot, (unsigned long long)h);
    return 0;
}
