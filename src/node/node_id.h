/*
 * A worker's identity: 16 random bytes made once and kept in its state
 * directory (file `node-id`, 32 hex digits), sent with its registration so
 * the master can tell the worker that holds a name from another process
 * asking for it (proto: AssignTaskRequest.node_id).
 */
#ifndef ND_NODE_NODE_ID_H
#define ND_NODE_NODE_ID_H

#include <stddef.h>
#include <stdint.h>

#define ND_NODE_ID_LEN 16

/*
 * The default state directory of a worker, into buf: $STATE_DIRECTORY (set
 * by systemd's StateDirectory=; its first entry), else /var/lib/noded when
 * running as root, else $XDG_STATE_HOME/noded, else $HOME/.local/state/noded.
 * 0, or -ENOENT when none applies (no HOME) or -ENAMETOOLONG.
 */
int nd_state_dir_default(char *buf, size_t len);

/*
 * Reads the id kept in dir, or makes one: dir (and its parents) created
 * 0700, the file written 0600 atomically and durably. 0, or -errno with
 * err (errlen bytes) saying what failed; a file that is not an id is an
 * error (-EINVAL), never silently replaced.
 */
int nd_node_id_load(const char *dir, uint8_t id[ND_NODE_ID_LEN], char *err,
		    size_t errlen);

/* A fresh random id (for workers that live as long as their process). 0 or
 * -EIO. */
int nd_node_id_random(uint8_t id[ND_NODE_ID_LEN]);

/* id as 32 lowercase hex digits and a NUL (out: 33 bytes). */
void nd_node_id_hex(const uint8_t *id, size_t len, char *out);

#endif
