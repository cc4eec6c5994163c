/* The run store's schema migrations (private to core/store*.c). The schema itself is
 * documented table by table in core/store/STORE.md. */
#ifndef LORASC_STORE_SCHEMA_H
#define LORASC_STORE_SCHEMA_H

struct sqlite3;

/* Reads the file's schema version and brings it up to STORE_SCHEMA_VERSION in one
 * BEGIN IMMEDIATE transaction (nothing is locked when it is already current). path is for
 * messages. Errors: not an SQLite file, not a run store, a newer schema than this build's. */
int store_schema_migrate(struct sqlite3 *db, const char *path);
/* The file is a run store of this build's schema version, read without writing anything (a
 * read-only open); an older version is an error saying it needs write access once. */
int store_schema_check(struct sqlite3 *db, const char *path);

/* Writes the current UTC time as ISO-8601 with milliseconds, "2024-05-01T12:34:56.789Z",
 * offset by delta_s seconds. Fixed width, so text order is time order. */
void store_schema_time_iso(char out[32], double delta_s);

#endif
