/* Bump allocation over one backend block (see arena.h). */
#include "core/base/arena.h"

#include "core/base/error.h"

enum { ARENA_ALIGN = 64 };

Arena arena_measure(void) { return (Arena){0}; }

int arena_reserve(Arena *a, Backend *be, size_t bytes) {
    if (a->base && bytes <= a->capacity) {
        arena_reset(a);
        return LSC_OK;
    }
    arena_free(a);
    a->be = be;
    a->base = be->alloc(be, bytes);
    if (!a->base) { /* the backend's own sentence when it has one (CUDA: the memory free) */
        const char *e = be->error(be);
        return e ? error_set("%s", e)
                 : error_set("Out of memory reserving %zu bytes of activations.", bytes);
    }
    a->capacity = bytes;
    a->used = 0;
    return LSC_OK;
}

Real *arena_alloc(Arena *a, size_t n) {
    const size_t bytes = (n * sizeof(Real) + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    const size_t at = a->used;
    a->used += bytes;
    if (!a->base) return NULL;
    LSC_ASSERT(a->used <= a->capacity);
    return (Real *)(a->base + at);
}

void arena_reset(Arena *a) { a->used = 0; }

void arena_free(Arena *a) {
    if (a->base) a->be->free(a->be, a->base);
    a->base = NULL;
    a->capacity = a->used = 0;
}
