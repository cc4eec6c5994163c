/* The state of a fine-tuning run in the lorasc container (see finetune_state.h): the list of
 * real-valued blocks a run changes, written in one pass, and read and checked in full before
 * a load writes any of them. */
#include "core/formats/finetune_state.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base/error.h"
#include "core/formats/container.h"

/* One block of device Reals the run changes, under its section name. */
typedef struct StateBlock {
    char name[CONTAINER_NAME_LEN];
    Real *data;
    size_t n;
} StateBlock;

/* The blocks of ft, in file order; returns their count (*blocks malloc'ed), -1 when out of
 * memory. The adapted weights come from the model's weight function, [out, in] each. */
static int state_blocks(const Finetune *ft, StateBlock **blocks) {
    const LoraAdapters *fast = ft->fast;
    const int max = fast->n_layers * LORA_NUM_TARGETS + 6;
    StateBlock *b = malloc((size_t)max * sizeof *b);
    if (!b) return -1;
    int n = 0;
    for (int l = 0; l < fast->n_layers; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!lora_enabled(fast, t)) continue;
            snprintf(b[n].name, sizeof b[n].name, "weight.%d.%s", l, lora_target_name((LoraTarget)t));
            b[n].data = ft->model.weight(ft->model.model, l, t);
            b[n++].n = (size_t)fast->out_dim[t] * (size_t)fast->in_dim[t];
        }
    if (ft->model.extra.n > 0) b[n++] = (StateBlock){"weight.extra", ft->model.extra.p, ft->model.extra.n};
    b[n++] = (StateBlock){"fast.params", fast->params, fast->num_params};
    b[n++] = (StateBlock){"slow.params", ft->cascade.slow.params, ft->cascade.slow.num_params};
    b[n++] = (StateBlock){"adamw.m", ft->opt.m, ft->opt.n_total};
    b[n++] = (StateBlock){"adamw.v", ft->opt.v, ft->opt.n_total};
    *blocks = b;
    return n;
}

/* ------------------------------------------------------------------------------------------
 * save */

/* The cascade's host copies of the slow adapter at each merge (keep_merges; the PEFT export
 * of the run stacks them): their count and values. */
static void write_kept(ContainerWriter *w, const Cascade *c) {
    const int64_t n_kept = c->n_kept;
    const size_t n = (size_t)c->n_kept * c->slow.num_params;
    container_write_section(w, "cascade.n_kept", CONTAINER_I64, &n_kept, 1);
    if (sizeof(Real) == sizeof(float)) {
        container_write_section(w, "cascade.kept", CONTAINER_F32, c->kept, n);
        return;
    }
    float *f32 = malloc((n + 1) * sizeof *f32);
    if (!f32) {
        w->failed = 1; /* container_write_end reports it and removes the partial file */
        return;
    }
    for (size_t i = 0; i < n; i++) f32[i] = (float)c->kept[i];
    container_write_section(w, "cascade.kept", CONTAINER_F32, f32, n);
    free(f32);
}

int finetune_state_save(const char *path, const Finetune *ft, const char *key,
                        const FinetuneStateNotes *notes) {
    if (notes->n_values < 0 || notes->n_values > FINETUNE_STATE_MAX_NOTES)
        return error_set("A run's state keeps at most %d notes, not %d.", FINETUNE_STATE_MAX_NOTES,
                         notes->n_values);
    StateBlock *blocks = NULL;
    const int n_blocks = state_blocks(ft, &blocks);
    int64_t *group_steps = malloc(((size_t)ft->opt.n_groups + 1) * sizeof *group_steps);
    if (n_blocks < 0 || !group_steps) {
        free(blocks);
        free(group_steps);
        return error_set("Out of memory saving the state of a run to %s.", path);
    }
    ContainerWriter w;
    int rc = container_write_begin(&w, path);
    if (rc == LSC_OK) {
        const int64_t step = ft->step, total = ft->config.total_steps, opt_step = ft->opt.step;
        const int32_t magset[2] = {ft->fast->magnitudes_set, ft->cascade.slow.magnitudes_set};
        for (int i = 0; i < ft->opt.n_groups; i++) group_steps[i] = ft->opt.group_step[i];
        container_write_section(&w, "state.key", CONTAINER_U8, key, strlen(key));
        container_write_section(&w, "state.step", CONTAINER_I64, &step, 1);
        container_write_section(&w, "state.total_steps", CONTAINER_I64, &total, 1);
        container_write_section(&w, "state.mark", CONTAINER_I64, &notes->mark, 1);
        container_write_section(&w, "state.notes", CONTAINER_F64, notes->values,
                                (uint64_t)notes->n_values);
        for (int i = 0; i < n_blocks; i++)
            container_write_reals(&w, ft->fast->be, blocks[i].name, blocks[i].data, blocks[i].n);
        container_write_section(&w, "lora.magnitudes_set", CONTAINER_I32, magset, 2);
        write_kept(&w, &ft->cascade);
        container_write_section(&w, "adamw.step", CONTAINER_I64, &opt_step, 1);
        container_write_section(&w, "adamw.group_steps", CONTAINER_I64, group_steps,
                                (uint64_t)ft->opt.n_groups);
        rc = container_write_end(&w);
    }
    free(blocks);
    free(group_steps);
    return rc;
}

/* ------------------------------------------------------------------------------------------
 * load: check everything, then copy */

/* The section `name` must be there with `count` elements of dtype. */
static int expect(const ContainerReader *r, const char *name, ContainerDtype dtype, uint64_t count) {
    const ContainerSection *s = container_find(r, name);
    if (!s)
        return error_set("%s has no section '%s': it is not the saved state of this run (delete "
                         "it to start the run again from step 0).", r->path, name);
    if (s->dtype != (uint32_t)dtype || s->count != count)
        return error_set("%s holds %llu values in '%s' where this run has %llu: it is the state of "
                         "a run of another shape (delete it to start again from step 0).", r->path,
                         (unsigned long long)s->count, name, (unsigned long long)count);
    return LSC_OK;
}

/* The key, the total step count and the step, before any block is read. */
static int check_header(ContainerReader *r, const Finetune *ft, const char *key, int64_t *step) {
    const ContainerSection *k = container_find(r, "state.key");
    if (!k || k->dtype != CONTAINER_U8)
        return error_set("%s has no run key: it is not the state of a fine-tuning run.", r->path);
    const size_t key_len = strlen(key);
    char *have = malloc(k->count + 1);
    if (!have) return error_set("Out of memory reading %s.", r->path);
    int rc = container_read(r, "state.key", CONTAINER_U8, have, k->count);
    if (rc == LSC_OK) {
        have[k->count] = '\0';
        if (k->count != key_len || memcmp(have, key, key_len) != 0)
            rc = error_set("%s was saved by run '%.120s', not by this one ('%.120s'): another "
                           "config or another build of lorasc (delete it to start again from "
                           "step 0).", r->path, have, key);
    }
    free(have);
    int64_t total = 0;
    if (rc == LSC_OK && (rc = expect(r, "state.total_steps", CONTAINER_I64, 1)) == LSC_OK)
        rc = container_read(r, "state.total_steps", CONTAINER_I64, &total, 1);
    if (rc == LSC_OK && total != ft->config.total_steps)
        rc = error_set("%s is the state of a run of %lld steps; this run has %ld.", r->path,
                       (long long)total, ft->config.total_steps);
    if (rc == LSC_OK && (rc = expect(r, "state.step", CONTAINER_I64, 1)) == LSC_OK)
        rc = container_read(r, "state.step", CONTAINER_I64, step, 1);
    if (rc == LSC_OK && (*step < 0 || *step > total))
        rc = error_set("%s is corrupt: it holds step %lld of a run of %lld steps.", r->path,
                       (long long)*step, (long long)total);
    return rc;
}

/* The f32 values of block b read from the file, into its device Reals (through scratch when
 * Real is double). */
static void block_to_device(Backend *be, const StateBlock *b, const float *f32, Real *scratch) {
    const void *src = f32;
    if (sizeof(Real) != sizeof(float)) {
        for (size_t i = 0; i < b->n; i++) scratch[i] = (Real)f32[i];
        src = scratch;
    }
    be->to_device(be, b->data, src, b->n * sizeof(Real));
}

int finetune_state_load(const char *path, Finetune *ft, const char *key, FinetuneStateNotes *notes) {
    StateBlock *blocks = NULL;
    const int n_blocks = state_blocks(ft, &blocks);
    int64_t *group_steps = malloc(((size_t)ft->opt.n_groups + 1) * sizeof *group_steps);
    float *f32 = NULL;
    Real *host = NULL, *kept = NULL;
    ContainerReader r = {0};
    int rc = LSC_OK;
    if (n_blocks < 0 || !group_steps) {
        rc = error_set("Out of memory loading the state of a run from %s.", path);
        goto out;
    }
    if ((rc = container_open(&r, path)) != LSC_OK) goto out;
    int64_t step = 0, opt_step = 0, saved_mark = 0;
    int32_t magset[2];
    size_t total = 0, widest = 0;
    rc = check_header(&r, ft, key, &step);
    for (int i = 0; rc == LSC_OK && i < n_blocks; i++) {
        rc = expect(&r, blocks[i].name, CONTAINER_F32, blocks[i].n);
        total += blocks[i].n;
        if (blocks[i].n > widest) widest = blocks[i].n;
    }
    if (rc == LSC_OK) rc = expect(&r, "state.mark", CONTAINER_I64, 1);
    if (rc == LSC_OK) rc = expect(&r, "lora.magnitudes_set", CONTAINER_I32, 2);
    if (rc == LSC_OK) rc = expect(&r, "adamw.step", CONTAINER_I64, 1);
    if (rc == LSC_OK) rc = expect(&r, "adamw.group_steps", CONTAINER_I64, (uint64_t)ft->opt.n_groups);
    if (rc == LSC_OK) rc = container_read(&r, "state.mark", CONTAINER_I64, &saved_mark, 1);
    const ContainerSection *ns = rc == LSC_OK ? container_find(&r, "state.notes") : NULL;
    FinetuneStateNotes saved_notes = {0};
    if (rc == LSC_OK && (!ns || ns->count > FINETUNE_STATE_MAX_NOTES))
        rc = error_set("%s has %s: it is not the saved state of a run of this lorasc (delete it to "
                       "start the run again from step 0).", path,
                       ns ? "too many notes" : "no section 'state.notes'");
    if (rc == LSC_OK) {
        saved_notes.n_values = (int)ns->count;
        rc = container_read(&r, "state.notes", CONTAINER_F64, saved_notes.values, ns->count);
    }
    if (rc == LSC_OK) rc = container_read(&r, "lora.magnitudes_set", CONTAINER_I32, magset, 2);
    if (rc == LSC_OK) rc = container_read(&r, "adamw.step", CONTAINER_I64, &opt_step, 1);
    if (rc == LSC_OK)
        rc = container_read(&r, "adamw.group_steps", CONTAINER_I64, group_steps, (uint64_t)ft->opt.n_groups);
    int64_t n_kept = 0;
    if (rc == LSC_OK && (rc = expect(&r, "cascade.n_kept", CONTAINER_I64, 1)) == LSC_OK)
        rc = container_read(&r, "cascade.n_kept", CONTAINER_I64, &n_kept, 1);
    if (rc == LSC_OK && (n_kept < 0 || n_kept > ft->cascade.n_experts))
        rc = error_set("%s is corrupt: it keeps the adapters of %lld merges in a run of %d experts.",
                       path, (long long)n_kept, ft->cascade.n_experts);
    const size_t kept_n = (size_t)n_kept * ft->cascade.slow.num_params;
    if (rc == LSC_OK) rc = expect(&r, "cascade.kept", CONTAINER_F32, kept_n);
    if (rc == LSC_OK && !(kept = malloc((kept_n + 1) * sizeof *kept)))
        rc = error_set("Out of memory loading the state of a run from %s.", path);
    if (rc == LSC_OK && sizeof(Real) == sizeof(float))
        rc = container_read(&r, "cascade.kept", CONTAINER_F32, kept, kept_n);
    if (rc == LSC_OK && sizeof(Real) != sizeof(float)) {
        float *f32k = malloc((kept_n + 1) * sizeof *f32k);
        if (!f32k) rc = error_set("Out of memory loading the state of a run from %s.", path);
        if (rc == LSC_OK) rc = container_read(&r, "cascade.kept", CONTAINER_F32, f32k, kept_n);
        for (size_t i = 0; rc == LSC_OK && i < kept_n; i++) kept[i] = (Real)f32k[i];
        free(f32k);
    }
    /* every block read and its checksum checked before the first is copied into the run */
    if (rc == LSC_OK) {
        f32 = malloc((total + 1) * sizeof *f32);
        host = sizeof(Real) == sizeof(float) ? (Real *)f32 : malloc((widest + 1) * sizeof *host);
        if (!f32 || !host) rc = error_set("Out of memory loading the state of a run from %s.", path);
    }
    for (size_t i = 0, at = 0; rc == LSC_OK && i < (size_t)n_blocks; at += blocks[i++].n)
        rc = container_read(&r, blocks[i].name, CONTAINER_F32, f32 + at, blocks[i].n);
    if (rc == LSC_OK) {
        for (size_t i = 0, at = 0; i < (size_t)n_blocks; at += blocks[i++].n)
            block_to_device(ft->fast->be, &blocks[i], f32 + at, host);
        ft->step = (long)step;
        step_log_clear(&ft->log); /* results not taken before the load are not this run's */
        ft->opt.step = (long)opt_step;
        for (int i = 0; i < ft->opt.n_groups; i++) ft->opt.group_step[i] = (long)group_steps[i];
        ft->fast->magnitudes_set = magset[0];
        ft->cascade.slow.magnitudes_set = magset[1];
        free(ft->cascade.kept);
        ft->cascade.kept = n_kept > 0 ? kept : NULL;
        ft->cascade.n_kept = (int)n_kept;
        if (n_kept > 0) kept = NULL; /* the cascade's now */
        saved_notes.mark = saved_mark;
        if (notes) *notes = saved_notes;
    }
out:
    container_close(&r);
    free(kept);
    if ((void *)host != (void *)f32) free(host);
    free(f32);
    free(blocks);
    free(group_steps);
    return rc;
}
