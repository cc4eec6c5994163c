/* Benchmark (not a test): what decoding a streamed image set's next batch in the background
 * (ImageSamplerConfig.prefetch, on by default on a GPU) saves per training step. The device's
 * step is stood in for by a sleep of the same length as decoding one batch, the host's cores
 * idle meanwhile as they are while a GPU computes: the ideal is 2x. The images are photograph
 * sized JPEGs (500 x 375, ImageNet's median) through CLIP's preprocessing (bicubic shorter
 * side to 224, centre crop), written to a temporary folder first.
 * Usage: bench_image_prefetch [--batch N] [--steps N] [--images-per-class N] */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h> /* tests/image_files.h reports a failed write through cmocka */

#include "core/base/error.h"
#include "core/tasks/image_train.h"
#include "tests/bench/bench_time.h"
#include "tests/image_files.h"

static void die(const char *what) {
    fprintf(stderr, "bench_image_prefetch: %s: %s\n", what, error_last());
    exit(1);
}

/* A picture JPEG compresses like a photograph: smooth gradients, edges and some noise. */
static uint8_t *picture(int w, int h, unsigned seed) {
    uint8_t *p = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                seed = seed * 1103515245u + 12345u;
                const double v = 128 + 60 * sin(0.02 * x * (c + 1) + 0.03 * y) +
                                 40 * ((x / 37 + y / 23 + c) % 2) + (double)(seed >> 27);
                p[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

static void sleep_s(double s) {
    const struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* Median seconds per step of `steps` steps: a batch, then `compute` seconds of sleep. */
static double time_steps(const ImageTask *t, const ViTConfig *c, const ImageSamplerConfig *sc,
                         int steps, double compute) {
    ImageSampler s;
    if (image_sampler_init(&s, t, c, sc) != LSC_OK) die("sampler");
    double dt[256];
    VitBatch b;
    if (image_sampler_batch(&s, 0, &b) != LSC_OK) die("batch"); /* warm: the first is never ahead */
    sleep_s(compute);
    for (int i = 0; i < steps; i++) {
        const double t0 = now_s();
        if (image_sampler_batch(&s, i + 1, &b) != LSC_OK) die("batch");
        sleep_s(compute);
        dt[i] = now_s() - t0;
    }
    image_sampler_free(&s);
    return median(dt, steps);
}

int main(int argc, char **argv) {
    int B = 32, steps = 12, per_class = 64;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--batch")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--images-per-class")) per_class = atoi(argv[i + 1]);
    }
    if (steps > 256) steps = 256;
    char root[256];
    if (temp_root_make(root, sizeof root, "lorasc_bench_prefetch") != 0) die("temp folder");
    const char *classes[3] = {"cat", "dog", "emu"};
    mkdir_p(path_of("%s/photos", root)); /* one level at a time */
    mkdir_p(path_of("%s/photos/train", root));
    mkdir_p(path_of("%s/photos/val", root));
    for (int k = 0; k < 3; k++) {
        mkdir_p(path_of("%s/photos/train/%s", root, classes[k]));
        mkdir_p(path_of("%s/photos/val/%s", root, classes[k]));
        for (int i = 0; i < per_class; i++) {
            uint8_t *p = picture(500, 375, 97u * (unsigned)k + (unsigned)i);
            write_jpeg(path_of("%s/photos/train/%s/%03d.jpg", root, classes[k], i), p, 500, 375);
            if (i < 2) write_jpeg(path_of("%s/photos/val/%s/%03d.jpg", root, classes[k], i), p, 500, 375);
            free(p);
        }
    }
    const ImagePreprocess clip = {.resample = RESAMPLE_PIL_BICUBIC, .shortest_edge = 224,
                                  .crop = 224, .crop_floor = 1};
    ImageTaskOptions o = image_task_default_options();
    o.n_norm = 3;
    for (int c = 0; c < 3; c++) o.mean[c] = 0.45f, o.std[c] = 0.27f;
    setenv("LORASC_IMAGE_MEMORY_MB", "0", 1); /* streamed, as ImageNet is */
    ImageTask t;
    if (image_task_load_folder(&t, path_of("%s/photos", root), 3, &clip, &o) != LSC_OK) die("load");
    const ViTConfig c = {.image_size = 224, .channels = 3, .n_classes = 3};
    ImageSamplerConfig plain = {.batch = B, .seed = 1}, ahead = plain;
    ahead.prefetch = 1;
    const double decode = time_steps(&t, &c, &plain, steps, 0);
    const double sync = time_steps(&t, &c, &plain, steps, decode);
    const double overlapped = time_steps(&t, &c, &ahead, steps, decode);
    printf("bench_image_prefetch: batch %d of 500x375 JPEGs -> CLIP's 224 (streamed), %d steps, "
           "the step's compute a sleep of one batch's decoding\n", B, steps);
    printf("  decoding one batch            %8.1f ms (%.2f ms/image)\n", 1e3 * decode, 1e3 * decode / B);
    printf("  step, decoded in the step     %8.1f ms\n", 1e3 * sync);
    printf("  step, decoded in background   %8.1f ms\n", 1e3 * overlapped);
    printf("  speed-up %.2fx (ideal %.2fx)\n", sync / overlapped, 2.0);
    image_task_free(&t);
    temp_root_remove(root);
    return 0;
}
