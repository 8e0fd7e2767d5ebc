/* SPDX-License-Identifier: MIT */
/* list.h - intrusive circular doubly linked lists
 *
 * One implementation for every list of the daemon (relays of a loop, bus
 * subscribers, API connections and their idle queue). A list head is a node
 * that points at itself when empty; a node that is not on a list points at
 * itself too (after ph_list_init() or ph_list_del()), so ph_list_linked()
 * answers "is it on a list?" without a flag beside it.
 *
 * Written here rather than taken from <sys/queue.h>: musl, which the small
 * static build uses, does not ship that header.
 */
#ifndef PH_LIST_H
#define PH_LIST_H

#include <stdbool.h>
#include <stddef.h>

/**
 * struct ph_list - a list head, or a node embedded in a list member
 * @prev, @next:	neighbours; the head itself at either end
 */
struct ph_list {
	struct ph_list *prev, *next;
};

/* Member of @type that embeds node @n (a ph_container_of for lists) */
#define ph_list_entry(n, type, member) \
	((type *)(void *)((char *)(n) - offsetof(type, member)))

/*
 * Walk @head with @n at every node; @tmp holds the next one, so the body may
 * unlink (or free) @n.
 */
#define ph_list_for_each_safe(n, tmp, head) \
	for ((n) = (head)->next, (tmp) = (n)->next; (n) != (head); (n) = (tmp), (tmp) = (n)->next)

/** ph_list_init() - an empty head, or a node on no list */
static inline void ph_list_init(struct ph_list *l)
{
	l->prev = l->next = l;
}

/** ph_list_empty() - true if @head has no members */
static inline bool ph_list_empty(const struct ph_list *head)
{
	return head->next == head;
}

/** ph_list_linked() - true if node @n is on a list (initialised nodes only) */
static inline bool ph_list_linked(const struct ph_list *n)
{
	return n->next != n;
}

static inline void ph_list_insert_(struct ph_list *n, struct ph_list *prev, struct ph_list *next)
{
	n->prev = prev;
	n->next = next;
	prev->next = n;
	next->prev = n;
}

/** ph_list_add() - insert @n first in @head */
static inline void ph_list_add(struct ph_list *head, struct ph_list *n)
{
	ph_list_insert_(n, head, head->next);
}

/** ph_list_add_tail() - insert @n last in @head (FIFO order) */
static inline void ph_list_add_tail(struct ph_list *head, struct ph_list *n)
{
	ph_list_insert_(n, head->prev, head);
}

/** ph_list_del() - unlink @n from its list; a no-op for a node on no list */
static inline void ph_list_del(struct ph_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	ph_list_init(n);
}

/** ph_list_first() - the first node of @head, or NULL if it is empty */
static inline struct ph_list *ph_list_first(const struct ph_list *head)
{
	return ph_list_empty(head) ? NULL : head->next;
}

#endif /* PH_LIST_H */
