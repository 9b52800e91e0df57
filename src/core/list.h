/* Intrusive doubly-linked list (the kernel's list_head, reduced). A zeroed
 * node is "not on a list"; nd_list_del() on it is a no-op. */
#ifndef ND_CORE_LIST_H
#define ND_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

struct nd_list {
	struct nd_list *prev, *next;
};

#define nd_container_of(p, type, member) \
	((type *)((char *)(p) - offsetof(type, member)))

static inline void nd_list_init(struct nd_list *h)
{
	h->prev = h->next = h;
}

static inline bool nd_list_empty(const struct nd_list *h)
{
	return h->next == h;
}

static inline bool nd_list_linked(const struct nd_list *n)
{
	return n->next != NULL;
}

static inline void nd_list_add_tail(struct nd_list *h, struct nd_list *n)
{
	n->prev = h->prev;
	n->next = h;
	h->prev->next = n;
	h->prev = n;
}

static inline void nd_list_del(struct nd_list *n)
{
	if (!n->next)
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
}

static inline void nd_list_move_tail(struct nd_list *h, struct nd_list *n)
{
	nd_list_del(n);
	nd_list_add_tail(h, n);
}

/* to (not on a list) takes over from's entries; from is empty after. */
static inline void nd_list_take(struct nd_list *to, struct nd_list *from)
{
	if (nd_list_empty(from)) {
		nd_list_init(to);
		return;
	}
	*to = *from;
	to->next->prev = to;
	to->prev->next = to;
	nd_list_init(from);
}

#endif
