/* An arena: one device block handed out front to back, reset as a whole. Activations of a
 * training step come from one, so a step allocates nothing. A measuring pass (arena with
 * no block) runs the same allocation sequence to learn the size before reserving it.
 * Tensors themselves are plain Real pointers with a shape comment where they are declared
 * (the llm.c way); the arena only owns their memory. */
#ifndef LORASC_ARENA_H
#define LORASC_ARENA_H

#include <stddef.h>

#include "kernels/backend.h"

typedef struct Arena {
    Backend *be;
    char *base;      /* NULL while measuring */
    size_t capacity; /* bytes */
    size_t used;     /* bytes handed out since the last reset */
} Arena;

/* An arena that only measures: arena_alloc returns NULL and counts. */
Arena arena_measure(void);
/* Makes sure the arena holds at least `bytes` (reallocates when it must grow; contents are
 * lost then) and resets it. Returns LSC_ERR on out of memory. */
int arena_reserve(Arena *a, Backend *be, size_t bytes);
/* n Reals, 64-byte aligned; NULL while measuring. Overflowing a reserved arena is a bug. */
Real *arena_alloc(Arena *a, size_t n);
void arena_reset(Arena *a);
void arena_free(Arena *a);

#endif
