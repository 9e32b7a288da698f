// The floating-point peak of this CPU's vector units, measured: independent chains of
// fused multiply-adds (fp32, 512-bit and 256-bit) and of bf16 dot products (vdpbf16ps),
// on every OpenMP thread. Tells what "x% of peak" means on a given machine.
//
//   gcc -O2 -fopenmp -mavx512f -mavx512bf16 -mfma benchmarks/peak-flops.c -o /tmp/peak-flops
//   OMP_NUM_THREADS=2 /tmp/peak-flops
//
// Twelve independent accumulators, kept in registers (the chain loop is unrolled), cover the
// FMA latency (4 cycles) of two pipes, so the loop is bound by throughput, not latency.
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <time.h>

enum { CHAINS = 12 };
static const long ITERATIONS = 100000000;

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void report(const char *what, double flopsPerIteration, double start) {
    double elapsed = seconds() - start;
    int threads = omp_get_max_threads();
    printf("%-28s %2d threads: %6.0f GFLOP/s\n", what, threads, threads * ITERATIONS * flopsPerIteration / elapsed * 1e-9);
}

int main(void) {
    float sink = 0;
    double start = seconds();
#pragma omp parallel reduction(+ : sink)
    {
        __m512 acc[CHAINS], b = _mm512_set1_ps(1.0000001f), c = _mm512_set1_ps(1e-7f);
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
        for (long k = 0; k < ITERATIONS; k++)
#pragma GCC unroll 12
            for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], b, c);
        for (int i = 1; i < CHAINS; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
        sink += _mm512_reduce_add_ps(acc[0]);
    }
    report("fp32 FMA, 512-bit (zmm)", CHAINS * 32.0, start);

    start = seconds();
#pragma omp parallel reduction(+ : sink)
    {
        __m256 acc[CHAINS], b = _mm256_set1_ps(1.0000001f), c = _mm256_set1_ps(1e-7f);
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_set1_ps((float)i);
        for (long k = 0; k < ITERATIONS; k++)
#pragma GCC unroll 12
            for (int i = 0; i < CHAINS; i++) acc[i] = _mm256_fmadd_ps(acc[i], b, c);
        for (int i = 1; i < CHAINS; i++) acc[0] = _mm256_add_ps(acc[0], acc[i]);
        float lanes[8];
        _mm256_storeu_ps(lanes, acc[0]);
        sink += lanes[0];
    }
    report("fp32 FMA, 256-bit (ymm)", CHAINS * 16.0, start);

    start = seconds();
#pragma omp parallel reduction(+ : sink)
    {
        __m512 acc[CHAINS];
        __m512bh one = (__m512bh)_mm512_set1_epi16(0x3f80);  // bfloat16 1.0
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
        for (long k = 0; k < ITERATIONS; k++)
#pragma GCC unroll 12
            for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], one, one);
        for (int i = 1; i < CHAINS; i++) acc[0] = _mm512_add_ps(acc[0], acc[i]);
        sink += _mm512_reduce_add_ps(acc[0]);
    }
    // vdpbf16ps: 32 products and 32 additions into 16 fp32 lanes = 64 flops.
    report("bf16 dot product (vdpbf16ps)", CHAINS * 64.0, start);
    // Printing the sums keeps the compiler from removing the loops.
    printf("(checksum %g)\n", sink);
    return 0;
}
