/* The SQLite run store: experiments, runs, metrics, evals and artifacts in one database file
 * (results/lorasc.db by default), shared safely by several `lorasc run --shard` processes.
 * The schema is documented in core/store/STORE.md. This is storage only: the grid, the config
 * hashing and the report arithmetic live in the Lua harness.
 *
 * Every function returns LSC_OK or LSC_ERR and leaves one sentence in error_last().
 * A Store belongs to one thread of one process: after fork(), open a new one in the child.
 *
 * Concurrency and crash safety: WAL mode, a 30 s busy timeout, and every change is one
 * transaction (a claim is BEGIN IMMEDIATE: read, decide, write). A process killed at any
 * point leaves the database intact; its run stays 'running' until a later claim sees that
 * its process is gone (same host, pid not alive) or its heartbeat is older than
 * stale_after_s (any host), marks it 'interrupted' and runs it again. */
#ifndef LORASC_STORE_H
#define LORASC_STORE_H

#include <stdint.h>

struct sqlite3;
struct sqlite3_stmt;

/* The schema version this build writes; store_open migrates older files up to it. */
#define STORE_SCHEMA_VERSION 3
/* Default for Store.stale_after_s: a run whose heartbeat is older is presumed dead. */
#define STORE_STALE_AFTER_S 600.0
#define STORE_MAX_STMTS 32

/* Run status, stored as its lower-case name (runs.status). */
typedef enum StoreRunStatus {
    STORE_PENDING = 0, /* registered, never started */
    STORE_RUNNING,     /* claimed by a process (runs.host, runs.pid) */
    STORE_DONE,        /* finished; its metrics/evals/artifacts are complete */
    STORE_FAILED,      /* finished with an error (runs.error) */
    STORE_INTERRUPTED, /* its process died or was stopped; claimed again by the next run */
    STORE_NUM_STATUS
} StoreRunStatus;

#define STORE_MASK(status) (1u << (status))
#define STORE_MASK_ALL ((1u << STORE_NUM_STATUS) - 1)

/* Flags for store_run_claim. */
#define STORE_RERUN_FAILED 1u /* also claim 'failed' runs (`lorasc run --rerun-failed`) */
/* also claim 'done' runs made by other code or from other inputs (`lorasc run --rerun-stale`):
 * their git_commit or git_dirty differs from this store's (store_meta_set), or their
 * inputs_sha256 from the one given to store_inputs_set (store_done_is_stale) */
#define STORE_RERUN_STALE 2u
/* keep what an earlier attempt logged: the caller resumes it from a saved state and then
 * calls store_run_rewind */
#define STORE_KEEP_LOG 4u

/* Where and how this process runs, recorded on every run it claims. Strings are copied;
 * NULL leaves a field unknown (NULL in the database). */
typedef struct StoreRunMeta {
    const char *host;          /* NULL: gethostname() (set it only to simulate another host) */
    const char *device;        /* e.g. "cpu (2 threads)", "NVIDIA H100 80GB HBM3" */
    const char *git_commit;    /* full hash of HEAD; NULL: not a git checkout / unknown */
    int git_dirty;             /* 1: uncommitted changes, 0: clean (ignored if no git_commit) */
    const char *build_options; /* free text, JSON recommended: {"buildtype":"release",...} */
    const char *lib_versions;  /* JSON recommended: {"sqlite":"3.40.1","lua":"5.4.4",...} */
} StoreRunMeta;

typedef struct StoreClaim {
    int64_t run_id;
    int claimed;           /* 1: this process now owns the run and must finish it */
    StoreRunStatus prior;  /* status found (STORE_PENDING for a row just created) */
    int was_stale;         /* 1: it was 'running' but its process was gone: marked interrupted */
    int attempt;           /* runs.attempts after the call (1 on a first claim) */
} StoreClaim;

typedef struct StoreCounts {
    long n[STORE_NUM_STATUS]; /* runs per status */
    long stale;               /* of the 'running' ones, how many look dead (see above) */
    long total;
} StoreCounts;

typedef struct StoreEval {
    const char *split;  /* "train", "val", "test", ... */
    const char *metric; /* "score", "loss", "accuracy", ... */
    double value;       /* NaN if stored as NULL */
} StoreEval;

/* One run as store_runs_query hands it to its callback. Strings may be NULL (unknown) and,
 * like evals, are valid only during the callback: copy what you keep. */
typedef struct StoreRun {
    int64_t id, experiment_id, seed;
    const char *experiment;  /* experiments.name */
    const char *config_hash; /* hex, as the harness computed it */
    const char *config;      /* canonical config JSON */
    StoreRunStatus status;
    int stale;               /* 'running' but its process looks dead */
    int attempts;
    const char *error;       /* failure message of a failed run */
    const char *created_at, *started_at, *finished_at, *heartbeat_at; /* ISO-8601 UTC */
    double wall_time_s;      /* NaN if unknown */
    const char *host, *device, *git_commit, *build_options, *lib_versions;
    const char *inputs_sha256; /* fingerprint of the run's data files and checkpoints, or NULL */
    const char *label;       /* the method's label ("lora+", "lorasc"), or NULL: not recorded */
    long pid;
    int git_dirty;           /* 1, 0, or -1 unknown */
    const StoreEval *evals;  /* every eval of the run, ordered by split then metric */
    int n_evals;
} StoreRun;

/* Return LSC_OK to continue; anything else stops the query, which then returns it. */
typedef int (*StoreRunFn)(void *ud, const StoreRun *run);

/* A file a run read (a data file, a checkpoint, a tokenizer, the cached base model), as
 * recorded in run_inputs. */
typedef struct StoreInput {
    const char *path, *kind; /* kind: "data", "corpus", "checkpoint", "tokenizer", "base", ... */
    const char *sha256;      /* hex */
    int64_t bytes;
} StoreInput;

/* Called once per input of a run by store_run_inputs; return LSC_OK to continue. */
typedef int (*StoreInputFn)(void *ud, const StoreInput *input);

typedef struct StoreMergeStats {
    long experiments_added;
    long runs_added;     /* not in OUT before */
    long runs_replaced;  /* in OUT with a lesser status (e.g. failed than the input's done), or
                          * the same status but finished earlier (a stale rerun replaces) */
    long runs_skipped;   /* duplicates kept as they were in OUT */
} StoreMergeStats;

/* Buffered rows, written by store_flush. Private. */
typedef struct StoreMetricRow { int64_t run_id, step; int name; double value; } StoreMetricRow;
typedef struct StoreEvalRow { int64_t run_id; char *split, *metric; double value; } StoreEvalRow;
typedef struct StoreInputRow {
    char *path, *kind;
    char sha256[65];
    int64_t bytes;
} StoreInputRow;
typedef struct StoreArtifactRow {
    int64_t run_id, bytes;
    char *path, *kind;
    char sha256[65];
} StoreArtifactRow;

typedef struct Store {
    struct sqlite3 *db;       /* usable read-only by callers (sqlite3_* on it); don't write */
    double stale_after_s;     /* heartbeat age that makes a 'running' run stale; may be set */
    /* private */
    struct sqlite3_stmt *stmt[STORE_MAX_STMTS];
    char *path;
    char host[256];
    char *device, *git_commit, *build_options, *lib_versions;
    int git_dirty;
    int readonly; /* opened by store_open_readonly */
    StoreMetricRow *metrics;
    long n_metrics, cap_metrics;
    char **names; /* metric names, interned */
    int n_names, cap_names;
    StoreEvalRow *evals;
    long n_evals, cap_evals;
    StoreArtifactRow *artifacts;
    long n_artifacts, cap_artifacts;
    char *inputs_sha256; /* store_inputs_set: what the next claims record */
    StoreInputRow *inputs;
    long n_inputs, cap_inputs;
} Store;

/* Opens (creating if absent) the database at path and migrates it to STORE_SCHEMA_VERSION in
 * one transaction. The directory must exist (it is not created). Errors, one sentence each:
 * missing directory, not an SQLite file, an SQLite file that is not a run store, a store from
 * a newer lorasc, a file or directory lorasc cannot write (the sentence says it is read-only
 * and that report/status/show/merge read it as it is). On error *s is left closed
 * (store_close is still safe to call). */
int store_open(Store *s, const char *path);
/* Opens an existing run database for reading only (report, status, show, a merge's input: a
 * finished sweep on a read-only share): nothing is written, not even a migration (a database
 * of an older schema is an error that says it needs write access once), and a WAL database
 * whose -shm file cannot be created (a read-only directory) is opened immutable. Writes
 * through *s fail. */
int store_open_readonly(Store *s, const char *path);
/* Flushes buffered rows (see store_flush), closes the database and frees everything. Returns
 * the flush's status; *s is closed either way. Safe on a zeroed or already closed Store. */
int store_close(Store *s);

/* Run metadata recorded by every later claim (copied). */
int store_meta_set(Store *s, const StoreRunMeta *meta);

/* Creates the experiment called name, or updates its file path and source; *id its id.
 * source may be NULL (then only its hash is unknown); its SHA-256 is stored beside it. */
int store_experiment_upsert(Store *s, const char *name, const char *file, const char *source,
                            int64_t *id);
/* *id = the experiment's id, or 0 if there is no experiment of that name. */
int store_experiment_find(Store *s, const char *name, int64_t *id);

/* Registers a run as 'pending' if (experiment, config_hash) is not there yet, so that
 * `lorasc status` can count it before it starts; *run_id its id (may be NULL). An existing row
 * with another config or seed for the same hash is an error (the hash must cover both). */
int store_run_add(Store *s, int64_t experiment_id, const char *config_hash, const char *config_json,
                  int64_t seed, int64_t *run_id);
/* Claims the run (creating it if absent) for this process, atomically: 'pending' and
 * 'interrupted' rows are claimed, 'failed' ones only with STORE_RERUN_FAILED, 'done' ones only
 * with STORE_RERUN_STALE and only if stale (store_done_is_stale); a 'running' row is claimed
 * only if its process is gone (it is first marked 'interrupted'). Claiming sets it 'running'
 * with this host, pid, metadata, inputs (store_inputs_set) and a fresh heartbeat, counts an
 * attempt, and deletes what an earlier attempt logged (metrics, evals, artifacts) unless flags
 * has STORE_KEEP_LOG. out->claimed says
 * whether this process must now run it; out->prior says why not. */
int store_run_claim(Store *s, int64_t experiment_id, const char *config_hash,
                    const char *config_json, int64_t seed, unsigned flags, StoreClaim *out);
/* A run resumed from a saved state (claimed with STORE_KEEP_LOG): *n = how many metric rows
 * it has in the database (buffered rows are not counted: flush first). The harness saves this
 * count with the state. */
int store_run_log_count(Store *s, int64_t run_id, int64_t *n);
/* Of a run this process holds: keeps its first `keep` metric rows (in the order they were
 * written: those logged before the state it resumes from was saved) and deletes the rest, its
 * evals and its artifacts, in one transaction. keep = 0 clears them all, as a claim without
 * STORE_KEEP_LOG does. */
int store_run_rewind(Store *s, int64_t run_id, int64_t keep);
/* Refreshes the heartbeat of a run this process holds. Call it at least every
 * stale_after_s / 4 seconds of work (store_flush does it too). An error means the run was
 * taken over by another process: stop working on it. */
int store_run_heartbeat(Store *s, int64_t run_id);
/* Ends a run this process holds: writes every buffered row (store_flush) and the final
 * status (STORE_DONE, STORE_FAILED or STORE_INTERRUPTED), error text (may be NULL),
 * finished_at and wall time, all in one transaction. */
int store_run_finish(Store *s, int64_t run_id, StoreRunStatus status, const char *error,
                     double wall_time_s);

/* Buffer one row in memory; nothing touches the database until store_flush. A metric is a
 * training-time series point (name e.g. "train.loss", "lr", "grad_norm", "expert.start");
 * several may share (step, name). An eval is a final score, one per (run, split, metric),
 * the last one written winning. An artifact is a file the run produced: it is hashed now
 * (SHA-256 and size), so the file must exist; one per (run, path). */
int store_metric_add(Store *s, int64_t run_id, int64_t step, const char *name, double value);
int store_eval_add(Store *s, int64_t run_id, const char *split, const char *metric, double value);
int store_artifact_add(Store *s, int64_t run_id, const char *path, const char *kind);
/* Writes all buffered rows in one transaction and refreshes the heartbeat of each run they
 * belong to. Rows of a run this process no longer holds (taken over after its heartbeat went
 * stale) are dropped and reported as an error, after the other rows are committed. On a
 * database error nothing is written and the buffer is kept for a retry. */
int store_flush(Store *s);

/* Counts the runs of one experiment (experiment_id 0: of all experiments) per status. */
int store_status(Store *s, int64_t experiment_id, StoreCounts *out);
/* Calls fn once per run of the experiment (0: all), in id order, for runs whose status is in
 * status_mask (STORE_MASK(STORE_DONE) | ..., or STORE_MASK_ALL), each with all its evals.
 * Reads one consistent snapshot; fn must not call other store functions on s. This is what
 * `lorasc status` lists and what reports aggregate (group by config minus seed, select on
 * val, report test mean and std). */
int store_runs_query(Store *s, int64_t experiment_id, unsigned status_mask, StoreRunFn fn,
                     void *ud);

/* Called once per metric row by store_metric_rows; return LSC_OK to continue. */
typedef int (*StoreMetricFn)(void *ud, int64_t step, const char *name, double value);
/* Calls fn once per metric row of the run whose name starts with prefix (NULL or "": every
 * row), in the order the rows were written (a resumed run's rows stay in step order), from
 * the database (rows still buffered are not seen: store_flush first). For plots
 * (`lorasc plot RUN_ID`); fn must not call other store functions on s. */
int store_metric_rows(Store *s, int64_t run_id, const char *prefix, StoreMetricFn fn, void *ud);

/* Merges the run store at in_path into s (`lorasc merge OUT.db IN.db...`), in one
 * transaction: experiments matched by name, runs by (experiment name, config hash). A run
 * not in s is copied with its metrics, evals and artifacts (ids remapped); a duplicate is
 * replaced only if the input's copy has a better status (done > failed > interrupted or
 * running > pending), so between two 'done' copies the first merged wins. stats (may be NULL)
 * is added to, not reset. in_path is migrated to the current schema first if older. */
int store_merge(Store *s, const char *in_path, StoreMergeStats *stats);

/* Provenance (store_provenance.c): what a run read, so that a result made by other code or
 * from other data is never silently reused. */

/* The inputs recorded by every later claim (copied; n = 0 records none): the run's data files
 * and checkpoints with their SHA-256, and inputs_sha256, the harness's fingerprint of them
 * (NULL: unknown), which STORE_RERUN_STALE compares with a done run's. */
int store_inputs_set(Store *s, const char *inputs_sha256, const StoreInput *inputs, int n);
/* Records one more input of a run this process holds (e.g. the cached base model, known only
 * once built), hashed now; written at once. Not part of the run's inputs_sha256. */
int store_input_add(Store *s, int64_t run_id, const char *path, const char *kind);
/* Calls fn once per recorded input of the run, ordered by kind then path. */
int store_run_inputs(Store *s, int64_t run_id, StoreInputFn fn, void *ud);
/* 1 if a done run recorded with this code version and inputs fingerprint (each may be NULL:
 * unknown; git_dirty -1 unknown) differs from what this store records now (store_meta_set,
 * store_inputs_set); unknown differs from anything known. */
int store_done_is_stale(const Store *s, const char *git_commit, int git_dirty,
                        const char *inputs_sha256);

/* Per-example outcomes and labels (store_examples.c, schema version 3). */

/* Stores the outcome of every example of one eval of a run this process holds (e.g. 1/0 for
 * each test example's correctness, its F1, a text window's accuracy), in example order, so
 * that a report can pair two runs example by example (a bootstrap over test examples). Written
 * at once, replacing what the run stored for (split, metric). The mean of values is the eval's
 * value where the eval is a mean over examples. */
int store_eval_examples_set(Store *s, int64_t run_id, const char *split, const char *metric,
                            const double *values, int64_t n);
/* The stored outcomes of (run, split, metric): *values malloc'd (the caller frees it) and *n;
 * *values = NULL and *n = 0 when none are stored. */
int store_eval_examples_get(Store *s, int64_t run_id, const char *split, const char *metric,
                            double **values, int64_t *n);
/* Records the method's label of a run (runs.label; the report's row name): written at once. */
int store_run_label_set(Store *s, int64_t run_id, const char *label);

/* "pending", "running", ...; NULL for an out-of-range value. */
const char *store_status_name(StoreRunStatus status);
/* The status named name, or -1 if none. */
int store_status_parse(const char *name);
/* The SQLite library version in use, e.g. "3.40.1" (for StoreRunMeta.lib_versions). */
const char *store_sqlite_version(void);

#endif
