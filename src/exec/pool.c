/* The worker's exec helper pool: see pool.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/log.h"
#include "exec/exec.h"
#include "exec/pool.h"

#define EVENT_MAX (16 * 1024)

struct helper {
	struct nd_pool *p;
	unsigned idx;                 /* in nd_pool.h */
	int fd;
	pid_t pid;
	bool armed;                   /* a RECVMSG is in flight */
	bool dead;
	struct nd_op op;
	struct msghdr msg;
	struct iovec iov;
	/* aligned as a cmsghdr without embedding one: its flexible array
	 * member would sit mid-struct (a GNU extension clang refuses) */
	_Alignas(struct cmsghdr) char ctl[CMSG_SPACE(2 * sizeof(int))];
	uint8_t buf[EVENT_MAX];
};

struct sendop {
	struct nd_op op;
	struct nd_pool *p;
	uint64_t key;                 /* the task it concerns (0: none) */
	size_t len;
	uint8_t data[];
};

struct nd_pool {
	struct nd_shard *s;
	const char *exe;
	struct helper **h;
	unsigned nh;
	const struct nd_pool_ops *ops;
	void *arg;
	unsigned inflight;            /* io_uring ops not completed */
	bool draining;
};

/* ---- helper events ---- */

static void arm_helper(struct helper *h);
static int helper_start(struct nd_pool *p, struct helper *h);

/* The helper went away: its tasks end as failed, a new one takes over. */
static void helper_died(struct helper *h)
{
	struct nd_pool *p = h->p;

	ND_LOG(ND_LOG_ERROR, "helper.died", ND_I("pid", h->pid),
	       ND_S("msg", "exec helper died; its tasks fail; replacing it"));
	p->ops->died(p->arg, h->idx);
	close(h->fd);
	waitpid(h->pid, NULL, WNOHANG);
	h->fd = -1;
	h->dead = true;
	if (!p->draining && helper_start(p, h) == 0)
		arm_helper(h);
}

static void on_helper(struct nd_shard *s, struct nd_op *op,
		      struct io_uring_cqe *cqe)
{
	struct helper *h = nd_container_of(op, struct helper, op);
	struct nd_pool *p = h->p;
	int fds[2] = { -1, -1 }, nfds = 0;
	Noded__ExecEvent *ev;
	struct cmsghdr *c;

	(void)s;
	h->armed = false;
	p->inflight--;
	if (cqe->res <= 0) {
		if (p->draining) {
			close(h->fd);
			h->fd = -1;
			h->dead = true;
		} else {
			helper_died(h);
		}
		return;
	}
	for (c = CMSG_FIRSTHDR(&h->msg); c; c = CMSG_NXTHDR(&h->msg, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			if (nfds > 2)
				nfds = 2;
			memcpy(fds, CMSG_DATA(c), (size_t)nfds * sizeof(int));
		}
	}
	ev = nd_exec_decode_event(h->buf, (size_t)cqe->res, nfds);
	if (ev && ev->body_case == NODED__EXEC_EVENT__BODY_STARTED) {
		p->ops->started(p->arg, ev->started, fds);
	} else {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		if (ev)
			p->ops->exited(p->arg, ev->exited);
		else
			ND_LOG(ND_LOG_ERROR, "helper.bad_event",
			       ND_I("pid", h->pid),
			       ND_S("msg", "undecodable event from an exec "
				    "helper"));
	}
	if (ev)
		noded__exec_event__free_unpacked(ev, NULL);
	if (!p->draining)
		arm_helper(h);
}

static void arm_helper(struct helper *h)
{
	struct io_uring_sqe *sqe = nd_shard_sqe(h->p->s);

	memset(&h->msg, 0, sizeof(h->msg));
	h->iov.iov_base = h->buf;
	h->iov.iov_len = sizeof(h->buf);
	h->msg.msg_iov = &h->iov;
	h->msg.msg_iovlen = 1;
	h->msg.msg_control = h->ctl;
	h->msg.msg_controllen = sizeof(h->ctl);
	io_uring_prep_recvmsg(sqe, h->fd, &h->msg, MSG_CMSG_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ND_UD(&h->op, ND_TAG_OP));
	h->armed = true;
	h->p->inflight++;
}

static int helper_start(struct nd_pool *p, struct helper *h)
{
	int ret = nd_exec_helper_spawn(p->exe, &h->fd, &h->pid);

	if (ret) {
		ND_LOG(ND_LOG_ERROR, "helper.spawn_failed",
		       ND_S("err", strerror(-ret)),
		       ND_S("msg", "cannot start an exec helper"));
		return ret;
	}
	h->dead = false;
	h->op.cb = on_helper;
	return 0;
}

/* ---- requests to helpers ---- */

static void on_sent(struct nd_shard *s, struct nd_op *op,
		    struct io_uring_cqe *cqe)
{
	struct sendop *so = nd_container_of(op, struct sendop, op);

	(void)s;
	so->p->inflight--;
	if (cqe->res < 0 && so->key)
		so->p->ops->unsent(so->p->arg, so->key);
	free(so);
}

int nd_pool_send(struct nd_pool *p, unsigned h, uint64_t key,
		 const Noded__ExecRequest *req)
{
	size_t len = noded__exec_request__get_packed_size(req);
	struct sendop *so = malloc(sizeof(*so) + len);
	struct io_uring_sqe *sqe;
	ssize_t n;

	if (!so)
		return -ENOMEM;
	n = nd_exec_encode_request(req, so->data, len);
	if (n < 0) {
		free(so);
		return (int)n;
	}
	so->op.cb = on_sent;
	so->p = p;
	so->key = key;
	so->len = len;
	sqe = nd_shard_sqe(p->s);
	io_uring_prep_send(sqe, p->h[h]->fd, so->data, len, 0);
	io_uring_sqe_set_data64(sqe, ND_UD(&so->op, ND_TAG_OP));
	p->inflight++;
	return 0;
}

/* ---- the interface ---- */

unsigned nd_pool_size(const struct nd_pool *p)
{
	return p->nh;
}

bool nd_pool_dead(const struct nd_pool *p, unsigned h)
{
	return p->h[h]->dead;
}

bool nd_pool_drain(struct nd_pool *p)
{
	if (!p->draining) {
		p->draining = true;
		for (unsigned i = 0; i < p->nh; i++)
			if (p->h[i]->fd >= 0)
				shutdown(p->h[i]->fd, SHUT_RDWR);
	}
	return p->inflight > 0;
}

int nd_pool_new(struct nd_pool **out, unsigned n, const char *exe,
		const struct nd_pool_ops *ops, void *arg)
{
	struct nd_pool *p = calloc(1, sizeof(*p));
	int ret = -ENOMEM;

	if (!p)
		return -ENOMEM;
	p->exe = exe;
	p->ops = ops;
	p->arg = arg;
	p->nh = n ? n : 1;
	p->h = calloc(p->nh, sizeof(*p->h));
	if (!p->h)
		goto err;
	for (unsigned i = 0; i < p->nh; i++) {
		p->h[i] = calloc(1, sizeof(**p->h));
		if (!p->h[i])
			goto err;
		p->h[i]->p = p;
		p->h[i]->idx = i;
		p->h[i]->fd = -1;
		ret = helper_start(p, p->h[i]);
		if (ret)
			goto err;
	}
	*out = p;
	return 0;
err:
	nd_pool_free(p);
	return ret;
}

void nd_pool_start(struct nd_pool *p, struct nd_shard *s)
{
	p->s = s;
	for (unsigned i = 0; i < p->nh; i++)
		arm_helper(p->h[i]);
}

void nd_pool_free(struct nd_pool *p)
{
	if (!p)
		return;
	for (unsigned i = 0; p->h && i < p->nh; i++) {
		if (!p->h[i])
			continue;
		if (p->h[i]->fd >= 0)
			close(p->h[i]->fd); /* EOF: the helper cleans up, exits */
		if (p->h[i]->pid > 0)
			waitpid(p->h[i]->pid, NULL, 0);
		free(p->h[i]);
	}
	free(p->h);
	free(p);
}
