// oneDNN's u8s8 convolutions against its fastest fp32 kernel (direct or Winograd), shape by
// shape, for the convolutions of ResNet-50 or ResNet-18 at 224x224: what 8-bit inference can
// gain on this CPU before anything is built into a graph (docs/performance.md, *8-bit convolutions*).
// Each layer is timed alone with bias and ReLU, forward inference, the median of 15 runs.
//
//   gcc -O2 benchmarks/int8-convolutions.c -o /tmp/int8-convolutions -ldnnl
//   OMP_NUM_THREADS=2 /tmp/int8-convolutions resnet50 1     # network, batch size
#include <dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int ascending(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static dnnl_engine_t engine;
static dnnl_stream_t stream;

static dnnl_memory_t filled(const dnnl_memory_desc_t *md) {
    dnnl_memory_t m;
    size_t size = dnnl_memory_desc_get_size(md);
    void *p = aligned_alloc(64, (size + 127) / 64 * 64);
    memset(p, 1, size);
    dnnl_memory_create(&m, md, engine, p);
    return m;
}

// Median seconds of one convolution; -1 if oneDNN has no kernel. `impl` gets the kernel's name.
static double timed(int n, int ic, int oc, int size, int k, int stride, int pad, int int8, int winograd, char *impl) {
    int out = (size + 2 * pad - k) / stride + 1;
    dnnl_dims_t sd = {n, ic, size, size}, wd = {oc, ic, k, k}, bd = {oc}, dd = {n, oc, out, out};
    dnnl_dims_t strides = {stride, stride}, pads = {pad, pad};
    dnnl_memory_desc_t smd, wmd, bmd, dmd;
    dnnl_memory_desc_init_by_tag(&smd, 4, sd, int8 ? dnnl_u8 : dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&wmd, 4, wd, int8 ? dnnl_s8 : dnnl_f32, dnnl_format_tag_any);
    dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_x);
    dnnl_memory_desc_init_by_tag(&dmd, 4, dd, int8 ? dnnl_u8 : dnnl_f32, dnnl_format_tag_any);
    dnnl_convolution_desc_t cd;
    if (dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, winograd ? dnnl_convolution_winograd : dnnl_convolution_direct,
                                           &smd, &wmd, &bmd, &dmd, strides, pads, pads)) return -1;
    dnnl_primitive_attr_t attr;
    dnnl_primitive_attr_create(&attr);
    if (int8) {
        float *scales = malloc(sizeof(float) * oc);
        for (int i = 0; i < oc; i++) scales[i] = 0.01f;
        dnnl_primitive_attr_set_output_scales(attr, oc, 2, scales);
    }
    dnnl_post_ops_t ops;
    dnnl_post_ops_create(&ops);
    dnnl_post_ops_append_eltwise(ops, 1, dnnl_eltwise_relu, 0, 0);
    dnnl_primitive_attr_set_post_ops(attr, ops);
    dnnl_primitive_desc_t pd;
    if (dnnl_primitive_desc_create(&pd, &cd, attr, engine, NULL)) return -1;
    const char *name;
    dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name);
    snprintf(impl, 64, "%s", name);
    dnnl_primitive_t p;
    dnnl_primitive_create(&p, pd);
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, filled(dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0))},
        {DNNL_ARG_WEIGHTS, filled(dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0))},
        {DNNL_ARG_BIAS, filled(&bmd)},
        {DNNL_ARG_DST, filled(dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0))},
        {DNNL_ARG_SCRATCHPAD, filled(dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0))}};
    double flop = 2.0 * n * oc * ic * k * k * out * out;
    int steps = (int)(1e9 / flop) / 15 + 1;
    if (steps > 200) steps = 200;
    for (int i = 0; i < 3; i++) dnnl_primitive_execute(p, stream, 5, args);
    dnnl_stream_wait(stream);
    double t[15];
    for (int r = 0; r < 15; r++) {
        double start = now();
        for (int i = 0; i < steps; i++) dnnl_primitive_execute(p, stream, 5, args);
        dnnl_stream_wait(stream);
        t[r] = (now() - start) / steps;
    }
    qsort(t, 15, sizeof(double), ascending);
    return t[7];
}

// input channels, output channels, input size, kernel, stride, padding, how many in the network
static const int resnet50[][7] = {
    {3, 64, 224, 7, 2, 3, 1},
    {64, 64, 56, 1, 1, 0, 1}, {256, 64, 56, 1, 1, 0, 2}, {64, 64, 56, 3, 1, 1, 3}, {64, 256, 56, 1, 1, 0, 3}, {64, 256, 56, 1, 1, 0, 1},
    {256, 128, 56, 1, 1, 0, 1}, {128, 128, 56, 3, 2, 1, 1}, {512, 128, 28, 1, 1, 0, 3}, {128, 128, 28, 3, 1, 1, 3},
    {128, 512, 28, 1, 1, 0, 4}, {256, 512, 56, 1, 2, 0, 1},
    {512, 256, 28, 1, 1, 0, 1}, {256, 256, 28, 3, 2, 1, 1}, {1024, 256, 14, 1, 1, 0, 5}, {256, 256, 14, 3, 1, 1, 5},
    {256, 1024, 14, 1, 1, 0, 6}, {512, 1024, 28, 1, 2, 0, 1},
    {1024, 512, 14, 1, 1, 0, 1}, {512, 512, 14, 3, 2, 1, 1}, {2048, 512, 7, 1, 1, 0, 2}, {512, 512, 7, 3, 1, 1, 2},
    {512, 2048, 7, 1, 1, 0, 3}, {1024, 2048, 14, 1, 2, 0, 1}, {0}};
static const int resnet18[][7] = {
    {3, 64, 224, 7, 2, 3, 1}, {64, 64, 56, 3, 1, 1, 4}, {64, 128, 56, 3, 2, 1, 1}, {128, 128, 28, 3, 1, 1, 3},
    {64, 128, 56, 1, 2, 0, 1}, {128, 256, 28, 3, 2, 1, 1}, {256, 256, 14, 3, 1, 1, 3}, {128, 256, 28, 1, 2, 0, 1},
    {256, 512, 14, 3, 2, 1, 1}, {512, 512, 7, 3, 1, 1, 3}, {256, 512, 14, 1, 2, 0, 1}, {0}};

int main(int argc, char **argv) {
    if (argc < 2 || (strcmp(argv[1], "resnet50") && strcmp(argv[1], "resnet18"))) {
        fprintf(stderr, "usage: %s resnet50|resnet18 [batch]\n", argv[0]);
        return 2;
    }
    const int(*layers)[7] = strcmp(argv[1], "resnet18") == 0 ? resnet18 : resnet50;
    int n = argc > 2 ? atoi(argv[2]) : 1;
    if (n < 1) n = 1;
    dnnl_engine_create(&engine, dnnl_cpu, 0);
    dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    double fp32Total = 0, int8Total = 0;
    printf("layer (in>out size kernel stride count) | fp32 best us | u8s8 us | ratio | kernels\n");
    for (int i = 0; layers[i][0]; i++) {
        const int *l = layers[i];
        char direct[64], wino[64] = "-", quantized[64];
        double f = timed(n, l[0], l[1], l[2], l[3], l[4], l[5], 0, 0, direct);
        double w = (l[3] == 3 && l[4] == 1) ? timed(n, l[0], l[1], l[2], l[3], l[4], l[5], 0, 1, wino) : -1;
        double q = timed(n, l[0], l[1], l[2], l[3], l[4], l[5], 1, 0, quantized);
        double best = (w > 0 && w < f) ? w : f;
        fp32Total += best * l[6];
        int8Total += q * l[6];
        printf("%4d>%4d %3d k%d s%d x%d | %8.1f | %8.1f | %.2fx | %s / %s\n", l[0], l[1], l[2], l[3], l[4], l[6], best * 1e6, q * 1e6,
               best / q, best == w ? wino : direct, quantized);
    }
    printf("%s, batch %d: fp32 %.2f ms, u8s8 %.2f ms, %.2fx\n", argv[1], n, fp32Total * 1e3, int8Total * 1e3, fp32Total / int8Total);
    return 0;
}
