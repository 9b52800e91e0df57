/* Task states, exit statuses, end notes and records as the task commands
 * print them; see common.h. */

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/common.h"
#include "wire/text.h"

/* ---- states and ended tasks ---- */

bool nd_cli_state_terminal(Noded__TaskState s)
{
	switch (s) {
	case NODED__TASK_STATE__TASK_SUCCEEDED:
	case NODED__TASK_STATE__TASK_FAILED:
	case NODED__TASK_STATE__TASK_TIMED_OUT:
	case NODED__TASK_STATE__TASK_CANCELLED:
	case NODED__TASK_STATE__TASK_LOST:
		return true;
	default:
		return false;
	}
}

/* 128+N as a shell reports a death by signal N, kept within 0..255. */
static int signal_status(int32_t sig)
{
	return sig > 0 && sig < 127 ? 128 + sig : 255;
}

int nd_cli_exit_status(const Noded__TaskRecord *r)
{
	switch (r->state) {
	case NODED__TASK_STATE__TASK_SUCCEEDED:
	case NODED__TASK_STATE__TASK_FAILED:
		if (r->signal)
			return signal_status(r->signal);
		if (r->exit_code < 0 || r->exit_code > 255)
			return 255;
		/* A failure is never reported as success, even when the
		 * master left the code at 0 (say, it could not start). */
		if (r->state == NODED__TASK_STATE__TASK_FAILED &&
		    r->exit_code == 0)
			return 1;
		return r->exit_code;
	case NODED__TASK_STATE__TASK_TIMED_OUT:
		return ND_CLI_EXIT_TIMEOUT;
	case NODED__TASK_STATE__TASK_CANCELLED:
		return r->signal ? signal_status(r->signal) : 130;
	case NODED__TASK_STATE__TASK_LOST:
		return ND_CLI_EXIT_LOST;
	default:
		return -1;
	}
}

bool nd_cli_end_note(const Noded__TaskRecord *r, char *buf, size_t size)
{
	const char *why = r->reason && r->reason[0] ? r->reason : NULL;
	unsigned long long id = (unsigned long long)r->id;

	buf[0] = '\0';
	switch (r->state) {
	case NODED__TASK_STATE__TASK_LOST:
		snprintf(buf, size, "task %llu lost: %s", id,
			 why ? why : "no reason given");
		return true;
	case NODED__TASK_STATE__TASK_FAILED:
		if (!why)
			return false;
		break;
	case NODED__TASK_STATE__TASK_TIMED_OUT:
		if (!why) {
			uint32_t ms = r->spec && r->spec->command ?
				      r->spec->command->timeout_ms : 0;

			if (ms)
				snprintf(buf, size, "task %llu timed out after "
					 "%g s", id, ms / 1000.0);
			else
				snprintf(buf, size, "task %llu timed out", id);
			return true;
		}
		break;
	case NODED__TASK_STATE__TASK_CANCELLED:
		if (!why) {
			snprintf(buf, size, "task %llu cancelled", id);
			return true;
		}
		break;
	default:
		return false;
	}
	snprintf(buf, size, "task %llu: %s", id, why);
	return true;
}

/* ---- records ---- */

/* Characters a word may hold and still be shown without quotes. */
static bool word_plain(const char *w)
{
	return *w && !w[strspn(w, "abcdefghijklmnopqrstuvwxyz"
				  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
				  "_@%+=:,./-")];
}

/* w as bash's $'...' quoting, for a word holding bytes that are not UTF-8
 * or control characters: pasted into a shell it gives the same bytes. */
static void word_ansi(FILE *f, const char *w)
{
	const unsigned char *p = (const unsigned char *)w;
	size_t len = strlen(w);

	fputs("$'", f);
	while (len) {
		size_t n = nd_utf8_seq(p, len);

		if (n == 1 && (*p == '\\' || *p == '\''))
			fprintf(f, "\\%c", *p);
		else if (n == 1 && *p == '\n')
			fputs("\\n", f);
		else if (n == 1 && *p == '\t')
			fputs("\\t", f);
		else if (n == 1 && (*p < 0x20 || *p == 0x7f))
			fprintf(f, "\\x%02x", *p);
		else if (!n || (n == 2 && p[0] == 0xc2 && p[1] < 0xa0))
			for (size_t i = 0; i < (n ? n : 1); i++)
				fprintf(f, "\\x%02x", p[i]);
		else
			fwrite(p, 1, n, f);
		n = n ? n : 1;
		p += n;
		len -= n;
	}
	fputc('\'', f);
}

char *nd_cli_command_string(const Noded__TaskSpec *s)
{
	const Noded__Command *c = s ? s->command : NULL;
	char *out = NULL, why[64];
	size_t len = 0;
	FILE *f;

	if (c && c->shell && c->shell[0])
		return nd_text_escaped(c->shell);
	f = open_memstream(&out, &len);
	if (!f)
		return NULL;
	for (size_t i = 0; c && i < c->n_argv; i++) {
		const char *w = c->argv[i];

		if (i)
			fputc(' ', f);
		if (word_plain(w)) {
			fputs(w, f);
			continue;
		}
		if (nd_text_name_problem(w, why, sizeof(why))) {
			word_ansi(f, w);
			continue;
		}
		fputc('\'', f);
		for (; *w; w++) {
			if (*w == '\'')
				fputs("'\\''", f);
			else
				fputc(*w, f);
		}
		fputc('\'', f);
	}
	if (fclose(f)) {
		free(out);
		return NULL;
	}
	return out;
}

/* "2026-11-22 14:26:58.123" in local time, or "-" for 0. */
static const char *fmt_time(uint64_t ms, char *buf, size_t size)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	size_t n;

	if (!ms || !localtime_r(&t, &tm))
		return "-";
	n = strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
	snprintf(buf + n, size - n, ".%03u", (unsigned)(ms % 1000));
	return buf;
}

/* One attempt of noded task: "attempt 1:  w1, LOST, started T, ended T
 * (ran S s): REASON". */
static void attempt_print(FILE *f, const Noded__TaskAttempt *a)
{
	char tb[64];
	bool ended = nd_cli_state_terminal(a->state);

	fprintf(f, "attempt %u:%*s", a->attempt,
		a->attempt < 10 ? 2 : a->attempt < 100 ? 1 : 0, "");
	nd_text_fput(f, a->node && a->node[0] ? a->node : "-");
	fprintf(f, ", %s", nd_task_state_name(a->state));
	fprintf(f, ", %s %s", a->started_unix_ms ? "started" : "assigned",
		fmt_time(a->started_unix_ms ? a->started_unix_ms :
			 a->assigned_unix_ms, tb, sizeof(tb)));
	if (a->ended_unix_ms)
		fprintf(f, ", ended %s", fmt_time(a->ended_unix_ms, tb,
						  sizeof(tb)));
	if (a->started_unix_ms && a->ended_unix_ms >= a->started_unix_ms &&
	    a->state != NODED__TASK_STATE__TASK_LOST) /* then: unknown */
		fprintf(f, " (ran %.3f s)",
			(double)(a->ended_unix_ms - a->started_unix_ms) / 1000);
	if (ended && a->signal)
		fprintf(f, ", signal %d", a->signal);
	else if (ended && a->state != NODED__TASK_STATE__TASK_LOST)
		fprintf(f, ", exit %d", a->exit_code);
	if (a->reason && a->reason[0]) {
		fputs(": ", f);
		nd_text_fput(f, a->reason);
	}
	fputc('\n', f);
}

void nd_cli_task_print(FILE *f, const Noded__TaskRecord *r)
{
	bool ended = nd_cli_state_terminal(r->state);
	const Noded__Command *c = r->spec ? r->spec->command : NULL;
	char *cmd = nd_cli_command_string(r->spec);
	char tb[64];

	fprintf(f, "id:         %" PRIu64 "\n", r->id);
	if (r->job_id)
		fprintf(f, "job:        %" PRIu64 "\n", r->job_id);
	fprintf(f, "state:      %s\n", nd_task_state_name(r->state));
	fprintf(f, "node:       ");
	nd_text_fput(f, r->node && r->node[0] ? r->node : "-");
	fprintf(f, "\n");
	fprintf(f, "command:    %s%s\n", cmd ? cmd : "?",
		c && c->shell && c->shell[0] ? "   (with /bin/sh -c)" : "");
	free(cmd);
	if (c && c->cwd && c->cwd[0]) {
		fprintf(f, "cwd:        ");
		nd_text_fput(f, c->cwd);
		fprintf(f, "\n");
	}
	if (c && c->timeout_ms)
		fprintf(f, "timeout:    %g s\n", c->timeout_ms / 1000.0);
	if (c && c->user && c->user[0]) {
		fprintf(f, "user:       ");
		nd_text_fput(f, c->user);
		fprintf(f, "\n");
	}
	if (c && c->inherit_env)
		fprintf(f, "env:        the worker's (--inherit-env)\n");
	if (c && (c->memory_max_bytes || c->cpu_millis || c->pids_max)) {
		fprintf(f, "limits:    ");
		if (c->memory_max_bytes)
			fprintf(f, " memory %" PRIu64 " bytes;",
				c->memory_max_bytes);
		if (c->cpu_millis)
			fprintf(f, " cpus %g;", c->cpu_millis / 1000.0);
		if (c->pids_max)
			fprintf(f, " pids %u;", c->pids_max);
		fprintf(f, "\n");
	}
	if (r->signal) {
		const char *abbrev = sigabbrev_np(r->signal);

		fprintf(f, "signal:     %d%s%s\n", r->signal,
			abbrev ? " SIG" : "", abbrev ? abbrev : "");
	} else if (ended && r->state != NODED__TASK_STATE__TASK_LOST) {
		fprintf(f, "exit code:  %d\n", r->exit_code);
	}
	if (r->reason && r->reason[0]) {
		fprintf(f, "reason:     ");
		nd_text_fput(f, r->reason);
		fprintf(f, "\n");
	}
	fprintf(f, "submitted:  %s\n", fmt_time(r->submitted_unix_ms, tb,
						sizeof(tb)));
	fprintf(f, "started:    %s\n", fmt_time(r->started_unix_ms, tb,
						sizeof(tb)));
	fprintf(f, "ended:      %s", fmt_time(r->ended_unix_ms, tb,
					      sizeof(tb)));
	if (r->started_unix_ms && r->ended_unix_ms >= r->started_unix_ms)
		fprintf(f, " (ran %.3f s)",
			(double)(r->ended_unix_ms - r->started_unix_ms) / 1000);
	fprintf(f, "\n");
	if (ended)
		fprintf(f, "cpu:        user %.3f s, system %.3f s\n"
			"max rss:    %" PRIu64 " KiB\n",
			(double)r->utime_us / 1e6, (double)r->stime_us / 1e6,
			r->max_rss_kib);
	fprintf(f, "attempt:    %u\n", r->attempt);
	if (r->watchers)
		fprintf(f, "watchers:   %u (streams following its output)\n",
			r->watchers);
	fprintf(f, "output:     %" PRIu64 " bytes%s\n", r->output_bytes,
		r->truncated ? " (truncated: the master kept only part)" : "");
	for (size_t i = 0; i < r->n_attempts; i++)
		attempt_print(f, r->attempts[i]);
}

/* ---- attempts ---- */

/* The last attempt of r's history, or NULL. */
static const Noded__TaskAttempt *last_attempt(const Noded__TaskRecord *r)
{
	return r->n_attempts ? r->attempts[r->n_attempts - 1] : NULL;
}

bool nd_cli_attempt_note(const Noded__TaskRecord *r, char *buf, size_t size)
{
	const Noded__TaskAttempt *a = last_attempt(r);
	unsigned long long id = (unsigned long long)r->id;
	char *node, *why;
	int n;

	buf[0] = '\0';
	if (!a || nd_cli_state_terminal(r->state) || r->attempt < 2)
		return false;
	node = nd_text_escaped(a->node ? a->node : "");
	why = nd_text_escaped(a->reason && a->reason[0] ? a->reason :
			      "no reason given");
	if (!node || !why)
		n = -1;
	else if (r->state == NODED__TASK_STATE__TASK_PENDING &&
		 a->attempt + 1 == r->attempt)
		n = snprintf(buf, size, "task %llu: attempt %u on %s was lost "
			     "(%s); retrying as attempt %u", id, a->attempt,
			     node, why, r->attempt);
	else if (r->state != NODED__TASK_STATE__TASK_PENDING &&
		 a->attempt == r->attempt)
		n = snprintf(buf, size, "task %llu: attempt %u runs on %s", id,
			     a->attempt, node);
	else
		n = -1;
	free(node);
	free(why);
	if (n < 0)
		buf[0] = '\0';
	return n >= 0;
}

bool nd_cli_attempt_begins(uint32_t *seen, uint32_t attempt)
{
	uint32_t last = *seen ? *seen : 1;

	if (!attempt)
		return false;
	*seen = attempt;
	return attempt != last;
}

void nd_cli_attempt_marker(FILE *f, uint64_t task, uint32_t attempt)
{
	fprintf(f, "noded: --- task %" PRIu64 ": output of attempt %u ---\n",
		task, attempt);
}
