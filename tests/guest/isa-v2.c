/* A user program for the x86-64-v2 level, built static with -march=x86-64-v2 by
 * tests/integration/cpu-models.sh and run on the host and in a guest: the printed digest must be
 * the same. It uses SSE3/SSSE3/SSE4.1/SSE4.2/POPCNT through intrinsics (so each is certainly in
 * the binary) and through loops the compiler vectorizes for the level. Built with -mbmi -mbmi2 as
 * well, it adds a BMI1/BMI2 digest (the part of x86-64-v3 qkvm implements so far). */
#include <nmmintrin.h>
#ifdef __BMI2__
#include <immintrin.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint32_t words[4096];
static int16_t shorts[4096];
static float floats[1024];
static double doubles[1024];

/* xorshift: the same inputs on every run */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

int main(void)
{
    for (int k = 0; k < 4096; k++) {
        words[k] = (uint32_t)next();
        shorts[k] = (int16_t)next();
    }
    for (int k = 0; k < 1024; k++) {
        floats[k] = (float)(int32_t)next() / 65536.0f;
        doubles[k] = (double)(int64_t)next() / 4294967296.0;
    }
    uint64_t crc = 0, pop = 0;
    __m128i acc = _mm_setzero_si128(), shuf = _mm_setr_epi8(15, 3, 7, 1, 0, 9, 12, 5, 2, 4, 6, 8, 10, 11, 13, 14);
    int idx = 0;
    const char *text = "the quick brown fox jumps over the lazy dog, again and again";
    __m128i needle = _mm_loadu_si128((const __m128i *)"lazy\0\0\0\0\0\0\0\0\0\0\0\0");
    for (int k = 0; k + 4 <= 4096; k += 4) {
        __m128i v = _mm_loadu_si128((const __m128i *)&words[k]);
        crc = _mm_crc32_u64(crc, (uint64_t)words[k] << 32 | words[k + 1]);
        pop += (uint64_t)__builtin_popcountll((uint64_t)words[k + 2] * words[k + 3]);
        v = _mm_shuffle_epi8(v, shuf);                              /* SSSE3 */
        v = _mm_abs_epi16(_mm_sign_epi16(v, acc));
        v = _mm_alignr_epi8(v, acc, 5);
        acc = _mm_add_epi32(acc, _mm_mullo_epi32(v, _mm_set1_epi32(k | 1)));   /* SSE4.1 */
        acc = _mm_max_epu32(acc, _mm_min_epi32(v, acc));
        acc = _mm_blendv_epi8(acc, _mm_cmpgt_epi64(v, acc), v);    /* SSE4.2 compare */
        acc = _mm_xor_si128(acc, _mm_cvtepu8_epi32(v));
        acc = _mm_insert_epi32(acc, _mm_extract_epi32(v, 2) ^ (int)pop, 1);
        if (_mm_testz_si128(acc, v))
            idx++;
        idx += _mm_extract_epi16(_mm_minpos_epu16(v), 1);
    }
    for (size_t off = 0; off + 16 <= strlen(text); off++)
        idx += _mm_cmpistri(needle, _mm_loadu_si128((const __m128i *)(text + off)),
                            _SIDD_CMP_EQUAL_ORDERED);
    /* vectorized loops: the compiler picks SSE4.1 forms (pminsd, pmovsx, pmulld...) */
    int64_t dot = 0;
    int32_t mn = 0x7fffffff;
    for (int k = 0; k < 4096; k++) {
        dot += (int64_t)shorts[k] * (int32_t)words[k];
        mn = (int32_t)words[k] < mn ? (int32_t)words[k] : mn;
    }
    __m128 fs = _mm_setzero_ps();
    __m128d ds = _mm_setzero_pd();
    for (int k = 0; k + 4 <= 1024; k += 4) {
        __m128 a = _mm_loadu_ps(&floats[k]);
        fs = _mm_add_ps(fs, _mm_dp_ps(a, a, 0xf1));
        fs = _mm_hadd_ps(fs, _mm_round_ps(a, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC));   /* SSE3 */
        __m128d d = _mm_loadu_pd(&doubles[k / 2]);
        ds = _mm_addsub_pd(ds, _mm_round_pd(d, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        ds = _mm_add_pd(ds, _mm_movedup_pd(d));
    }
    float fo[4];
    double dd[2];
    uint32_t ai[4];
    _mm_storeu_ps(fo, fs);
    _mm_storeu_pd(dd, ds);
    _mm_storeu_si128((__m128i *)ai, acc);
    printf("isa-v2: crc=%016llx pop=%llu idx=%d acc=%08x%08x%08x%08x dot=%lld min=%d f=%a d=%a\n",
           (unsigned long long)crc, (unsigned long long)pop, idx, ai[0], ai[1], ai[2], ai[3],
           (long long)dot, mn, (double)fo[0] + fo[1] + fo[2] + fo[3], dd[0] + dd[1]);
#ifdef __BMI2__
    uint64_t b = 0;
    unsigned long long hi;
    for (int k = 0; k + 2 <= 4096; k += 2) {
        uint64_t x = (uint64_t)words[k] << 32 | words[k + 1], y = (uint64_t)shorts[k] * 0x9e3779b9u;
        b ^= _pdep_u64(x, y) + _pext_u64(y, x) + _bzhi_u64(x, k & 63) + _andn_u64(x, y);
        b += _blsr_u64(x) ^ _blsi_u64(y) ^ _blsmsk_u64(x + b) ^ __bextr_u64(y, (unsigned)k & 0x3f3f);
        b ^= _mulx_u64(x, y | 1, &hi) + hi + _tzcnt_u64(y) + (b >> (k & 63)) + (x << (b & 63));
    }
    printf("isa-bmi: %016llx\n", (unsigned long long)b);
#endif
    return 0;
}
