/*
 * xsbench.c - a small load generator for any XenStore daemon.
 *
 * It speaks the XenStore wire protocol on a Unix socket, so the same
 * workloads run unchanged against pyxenstored, cxenstored and oxenstored.
 * bench/run.py compiles it at run time (cc -O2 -Wall) and drives it.
 *
 *   xsbench [-t SECS] [-p PID] [-B SECS] [-s SEED] SOCKET WORKLOAD [ARG...]
 *
 *   lat                 one client: READ, WRITE, DIRECTORY latency
 *   pipe K              K READs written at once, then K replies read
 *   idle N              READ latency while N other connections hold a watch
 *   watch N             N watchers on one subtree; time until the last event
 *   tput N              N clients, one request in flight each, 90% READ and
 *                       10% WRITE over 100 keys, all driven by one epoll loop
 *   txn N d|s           N clients doing read-modify-write transactions on a
 *                       counter each (d) or one shared counter (s), retried
 *                       on EAGAIN; exits 3 if an update was lost
 *   scale D PHASE       a Xen-host-shaped store of D domains; PHASE is
 *                       populate, measure, teardown or all
 *
 * Each result is one JSON line on stdout:
 *   {"m": NAME, "v": VALUE, "u": UNIT, "b": "lo"|"hi"|"info"[, "cut": 1]}
 * where "b" says whether a lower or a higher value is better, and "cut"
 * marks a figure cut short by the time budget.  -t is the
 * length of each timed loop, -p the daemon's pid (for its RSS and CPU time),
 * -B the time budget of populate and teardown at the scale workload.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { XS_DIRECTORY = 1, XS_READ = 2, XS_WATCH = 4, XS_TRANSACTION_START = 6,
       XS_TRANSACTION_END = 7, XS_WRITE = 11, XS_RM = 13, XS_WATCH_EVENT = 15,
       XS_ERROR = 16, XS_DIRECTORY_PART = 22 };

#define PAYLOAD_MAX 4096
#define HDR 16

/* The wire header is little endian; host order is too on x86 and arm64. */
struct hdr { uint32_t type, req_id, tx_id, len; };

/* One connection with its own input buffer (replies may arrive coalesced).
 * Requests stay within PAYLOAD_MAX, but replies may not: oxenstored answers
 * DIRECTORY of any size, so both buffers grow on demand. */
struct conn {
	int fd;
	char *buf;                      /* bytes read, not yet taken */
	size_t have, cap;
	struct hdr h;                   /* the last packet taken */
	char *payload;                  /* its payload, NUL-terminated */
	size_t pcap;
};

static const char *sock_path;
static double secs = 0.5, budget = 240;
static int daemon_pid;
static uint64_t rng = 88172645463325252ULL;

static void die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "xsbench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + ts.tv_nsec;
}

static uint32_t rnd(uint32_t n)   /* xorshift64, uniform enough here */
{
	rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
	return (uint32_t)(rng % n);
}

/* One result; cut != 0 marks a figure cut short by the time budget (-B). */
static void emit_cut(const char *name, double v, const char *unit, const char *better, int cut)
{
	printf("{\"m\": \"%s\", \"v\": %.6g, \"u\": \"%s\", \"b\": \"%s\"%s}\n",
	       name, v, unit, better, cut ? ", \"cut\": 1" : "");
	fflush(stdout);
}

static void emit(const char *name, double v, const char *unit, const char *better)
{
	emit_cut(name, v, unit, better, 0);
}

/* ---- connection and wire protocol -------------------------------------- */

static struct conn *xs_open(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) die("out of memory");
	c->cap = c->pcap = 2 * (HDR + PAYLOAD_MAX);
	c->buf = malloc(c->cap);
	c->payload = malloc(c->pcap);
	if (!c->buf || !c->payload) die("out of memory");
	if (strlen(sock_path) >= sizeof(sa.sun_path)) die("socket path too long");
	strcpy(sa.sun_path, sock_path);
	c->fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		die("connect %s: %s", sock_path, strerror(errno));
	return c;
}

static void xs_close(struct conn *c)
{
	close(c->fd);
	free(c->buf);
	free(c->payload);
	free(c);
}

static void write_all(int fd, const void *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR) continue;
		if (w <= 0) die("write: %s", strerror(errno));
		p = (const char *)p + w;
		n -= (size_t)w;
	}
}

/* Append one request (header + payload) to out; return its length. */
static size_t xs_pack(char *out, uint32_t type, uint32_t req_id, uint32_t tx_id,
		      const void *payload, size_t len)
{
	struct hdr h = { type, req_id, tx_id, (uint32_t)len };
	memcpy(out, &h, HDR);
	memcpy(out + HDR, payload, len);
	return HDR + len;
}

static void xs_send(struct conn *c, uint32_t type, uint32_t tx_id, const void *p, size_t len)
{
	char out[HDR + PAYLOAD_MAX];
	if (len > PAYLOAD_MAX) die("payload too long");
	write_all(c->fd, out, xs_pack(out, type, 0, tx_id, p, len));
}

/* Make room for n bytes in *p (capacity *cap). */
static void grow(char **p, size_t *cap, size_t n)
{
	if (n <= *cap) return;
	while (*cap < n) *cap *= 2;
	if (!(*p = realloc(*p, *cap))) die("out of memory");
}

/* Take one complete packet out of the buffer, if there is one. */
static int xs_take(struct conn *c)
{
	if (c->have < HDR) return 0;
	memcpy(&c->h, c->buf, HDR);
	if (c->h.len > (64u << 20)) die("reply of %u bytes", c->h.len);
	grow(&c->buf, &c->cap, HDR + c->h.len);
	grow(&c->payload, &c->pcap, c->h.len + 1);
	if (c->have < HDR + c->h.len) return 0;
	memcpy(c->payload, c->buf + HDR, c->h.len);
	c->payload[c->h.len] = 0;
	c->have -= HDR + c->h.len;
	memmove(c->buf, c->buf + HDR + c->h.len, c->have);
	return 1;
}

/* One read() into the buffer; dies if the daemon closed the connection. */
static void xs_fill(struct conn *c)
{
	ssize_t r = read(c->fd, c->buf + c->have, c->cap - c->have);
	if (r < 0 && errno == EINTR) return;
	if (r <= 0) die("connection closed by the daemon (%s)", r ? strerror(errno) : "EOF");
	c->have += (size_t)r;
}

static void xs_recv(struct conn *c)
{
	while (!xs_take(c)) xs_fill(c);
}

/* A blocking request: send, then wait for its reply (skipping watch events).
 * Returns 0, or -1 with the error name in c->payload. */
static int xs_req(struct conn *c, uint32_t type, uint32_t tx_id, const void *p, size_t len)
{
	xs_send(c, type, tx_id, p, len);
	do xs_recv(c); while (c->h.type == XS_WATCH_EVENT);
	return c->h.type == XS_ERROR ? -1 : 0;
}

/* Requests whose payload is NUL-separated strings: a NULL ends the list.
 * WRITE is the exception: its value is not NUL-terminated (pass last=0). */
static int xs_strs(struct conn *c, uint32_t type, uint32_t tx_id, int last_nul, ...)
{
	char p[PAYLOAD_MAX];
	size_t n = 0;
	const char *s;
	va_list ap;
	va_start(ap, last_nul);
	while ((s = va_arg(ap, const char *)) != NULL) {
		size_t l = strlen(s) + 1;
		if (n + l > sizeof(p)) die("payload too long");
		memcpy(p + n, s, l);
		n += l;
	}
	va_end(ap);
	return xs_req(c, type, tx_id, p, last_nul ? n : n - 1);
}

#define xs_write(c, tx, path, val) xs_strs(c, XS_WRITE, tx, 0, path, val, NULL)
#define xs_read(c, tx, path) xs_strs(c, XS_READ, tx, 1, path, NULL)
#define xs_rm(c, tx, path) xs_strs(c, XS_RM, tx, 1, path, NULL)

static void must(int rc, struct conn *c, const char *what)
{
	if (rc < 0) die("%s: %s", what, c->payload);
}

/* ---- statistics --------------------------------------------------------- */

struct samples { double *v; size_t n, cap; };

static void add(struct samples *s, double v)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 4096;
		s->v = realloc(s->v, s->cap * sizeof(double));
		if (!s->v) die("out of memory");
	}
	s->v[s->n++] = v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(struct samples *s, double p)   /* sorts s */
{
	if (s->n == 0) return 0;
	qsort(s->v, s->n, sizeof(double), cmp_double);
	return s->v[(size_t)(p * (double)(s->n - 1) + 0.5)];
}

/* The daemon's CPU time in ns, summed over its threads (-1 if unknown). */
static double daemon_cpu_ns(void)
{
	char path[320], line[128];
	double total = 0;
	struct dirent *e;
	DIR *d;
	if (!daemon_pid) return -1;
	snprintf(path, sizeof(path), "/proc/%d/task", daemon_pid);
	if (!(d = opendir(path))) return -1;
	while ((e = readdir(d)) != NULL) {
		FILE *f;
		if (e->d_name[0] == '.') continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/schedstat", daemon_pid, e->d_name);
		if (!(f = fopen(path, "r"))) continue;
		if (fgets(line, sizeof(line), f)) total += strtod(line, NULL);
		fclose(f);
	}
	closedir(d);
	return total;
}

static double daemon_rss_mib(void)
{
	char path[64], line[256];
	double kib = -1;
	FILE *f;
	snprintf(path, sizeof(path), "/proc/%d/status", daemon_pid);
	if (!daemon_pid || !(f = fopen(path, "r"))) return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmRSS: %lf", &kib) == 1) break;
	fclose(f);
	return kib < 0 ? -1 : kib / 1024;
}

/* Time one kind of request in a closed loop for `secs`; emit ops/s, p50, p99
 * and the daemon's CPU time per request. */
static void timed_loop(struct conn *c, const char *name, uint32_t type,
		       const char *p, size_t len)
{
	struct samples s = { 0 };
	char m[96];
	double cpu0 = daemon_cpu_ns();
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), t = t0;
	while (t < end) {
		uint64_t a = t;
		must(xs_req(c, type, 0, p, len), c, name);
		t = now_ns();
		add(&s, (double)(t - a) / 1e3);
	}
	double cpu1 = daemon_cpu_ns();
	snprintf(m, sizeof(m), "%s.ops", name);
	emit(m, (double)s.n / ((double)(t - t0) / 1e9), "ops/s", "hi");
	snprintf(m, sizeof(m), "%s.p50", name);
	emit(m, pct(&s, 0.50), "us", "lo");
	snprintf(m, sizeof(m), "%s.p99", name);
	emit(m, pct(&s, 0.99), "us", "lo");
	if (cpu0 >= 0 && cpu1 >= 0) {
		snprintf(m, sizeof(m), "%s.cpu", name);
		emit(m, (cpu1 - cpu0) / 1e3 / (double)s.n, "us", "lo");
	}
	free(s.v);
}

/* ---- workloads ---------------------------------------------------------- */

static void wl_lat(void)
{
	struct conn *c = xs_open();
	char path[64];
	must(xs_write(c, 0, "/bench/lat/val", "01234567"), c, "setup");
	must(xs_write(c, 0, "/bench/lat/w", "01234567"), c, "setup");
	for (int i = 0; i < 10; i++) {
		snprintf(path, sizeof(path), "/bench/lat/dir/c%d", i);
		must(xs_write(c, 0, path, ""), c, "setup");
	}
	timed_loop(c, "lat.read", XS_READ, "/bench/lat/val", 15);
	timed_loop(c, "lat.write", XS_WRITE, "/bench/lat/w\0" "76543210", 21);
	timed_loop(c, "lat.dir", XS_DIRECTORY, "/bench/lat/dir", 15);
	must(xs_rm(c, 0, "/bench/lat"), c, "cleanup");
	xs_close(c);
}

/* K READs in one write(), then K replies: the per-request cost when the
 * daemon can batch, without one wake-up per request. */
static void wl_pipe(int k)
{
	struct conn *c = xs_open();
	struct samples s = { 0 };
	size_t n = 0;
	char *batch = malloc((size_t)k * (HDR + 16));
	char m[64];
	if (!batch) die("out of memory");
	must(xs_write(c, 0, "/bench/pipe", "01234567"), c, "setup");
	for (int i = 0; i < k; i++)
		n += xs_pack(batch + n, XS_READ, (uint32_t)i, 0, "/bench/pipe", 12);
	double cpu0 = daemon_cpu_ns();
	uint64_t t = now_ns(), end = t + (uint64_t)(secs * 1e9);
	long reqs = 0;
	while (t < end || s.n < 3) {
		uint64_t a = t;
		write_all(c->fd, batch, n);
		for (int i = 0; i < k; i++) {
			xs_recv(c);
			if (c->h.type != XS_READ || c->h.req_id != (uint32_t)i)
				die("pipe: unexpected reply type %u id %u", c->h.type, c->h.req_id);
		}
		t = now_ns();
		add(&s, (double)(t - a) / k);
		reqs += k;
	}
	double cpu1 = daemon_cpu_ns();
	snprintf(m, sizeof(m), "pipe%d.ns_per_req", k);
	emit(m, pct(&s, 0.5), "ns", "lo");
	if (cpu0 >= 0 && cpu1 >= 0) {
		snprintf(m, sizeof(m), "pipe%d.cpu_ns_per_req", k);
		emit(m, (cpu1 - cpu0) / (double)reqs, "ns", "lo");
	}
	must(xs_rm(c, 0, "/bench/pipe"), c, "cleanup");
	free(s.v);
	free(batch);
	xs_close(c);
}

/* Open n connections, each with a watch on wpath (or wpath/<i> if per_conn),
 * and consume the OK and the initial event of each. */
static struct conn **open_watchers(int n, const char *wpath, int per_conn)
{
	struct conn **w = calloc((size_t)n, sizeof(*w));
	char path[128];
	if (!w) die("out of memory");
	for (int i = 0; i < n; i++) {
		w[i] = xs_open();
		if (per_conn) snprintf(path, sizeof(path), "%s/%d", wpath, i);
		else snprintf(path, sizeof(path), "%s", wpath);
		size_t l = strlen(path) + 1;
		memcpy(path + l, "tok", 4);
		xs_send(w[i], XS_WATCH, 0, path, l + 4);
	}
	for (int i = 0; i < n; i++) {
		int ok = 0, ev = 0;
		while (!ok || !ev) {
			xs_recv(w[i]);
			if (w[i]->h.type == XS_ERROR) die("watch: %s", w[i]->payload);
			if (w[i]->h.type == XS_WATCH_EVENT) ev = 1;
			else ok = 1;
		}
	}
	return w;
}

static void close_all(struct conn **w, int n)
{
	for (int i = 0; i < n; i++) xs_close(w[i]);
	free(w);
}

static void wl_idle(int n)
{
	struct conn **w = open_watchers(n, "/bench/idle", 1);
	struct conn *c = xs_open();
	char name[32];
	must(xs_write(c, 0, "/bench/idleval", "01234567"), c, "setup");
	snprintf(name, sizeof(name), "idle%d.read", n);
	timed_loop(c, name, XS_READ, "/bench/idleval", 15);
	must(xs_rm(c, 0, "/bench/idleval"), c, "cleanup");
	xs_close(c);
	close_all(w, n);
}

/* n watchers on /bench/watch; one WRITE below it; wait (epoll) until every
 * watcher has read its event.  Repeated for `secs` (at least 5 rounds). */
static void wl_watch(int n)
{
	struct conn **w = open_watchers(n, "/bench/watch", 0);
	struct conn *c = xs_open();
	struct samples s = { 0 };
	struct epoll_event ev, *evs = calloc((size_t)n, sizeof(ev));
	int ep = epoll_create1(0);
	char m[48];
	if (!evs || ep < 0) die("epoll: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		ev.events = EPOLLIN;
		ev.data.u32 = (uint32_t)i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, w[i]->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
	}
	uint64_t t = now_ns(), end = t + (uint64_t)(secs * 1e9);
	for (int round = 0; (t < end || round < 5) && round < 10000; round++) {
		int pending = n;
		uint64_t a = now_ns();
		must(xs_write(c, 0, "/bench/watch/k", "v"), c, "watch write");
		while (pending > 0) {
			int r = epoll_wait(ep, evs, n, 10000);
			if (r == 0) die("watch: %d watchers had no event after 10 s", pending);
			for (int j = 0; j < r; j++) {
				struct conn *wc = w[evs[j].data.u32];
				xs_fill(wc);
				while (xs_take(wc))
					if (wc->h.type == XS_WATCH_EVENT) pending--;
			}
		}
		t = now_ns();
		add(&s, (double)(t - a) / 1e3);
	}
	snprintf(m, sizeof(m), "watch%d.last_us", n);
	emit(m, pct(&s, 0.5), "us", "lo");
	must(xs_rm(c, 0, "/bench/watch"), c, "cleanup");
	close(ep);
	free(evs);
	free(s.v);
	xs_close(c);
	close_all(w, n);
}

/* ---- many clients, one epoll loop --------------------------------------- */

/* Open n connections and register each with a new epoll set (data: index). */
static struct conn **open_polled(int n, int *ep_out)
{
	struct conn **cs = calloc((size_t)n, sizeof(*cs));
	struct epoll_event ev;
	int ep = epoll_create1(0);
	if (!cs || ep < 0) die("epoll: %s", strerror(errno));
	for (int i = 0; i < n; i++) {
		cs[i] = xs_open();
		ev.events = EPOLLIN;
		ev.data.u32 = (uint32_t)i;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, cs[i]->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
	}
	*ep_out = ep;
	return cs;
}

#define TPUT_KEYS 100

/* Send connection i's next request of the 90/10 READ/WRITE mix; returns its type. */
static uint32_t tput_send(struct conn *c, char *path)
{
	int k = (int)rnd(TPUT_KEYS), wr = rnd(10) == 0;
	size_t l = (size_t)snprintf(path, 32, "/bench/tput/k%d", k) + 1;
	if (wr) {
		memcpy(path + l, "76543210", 8);
		xs_send(c, XS_WRITE, 0, path, l + 8);
		return XS_WRITE;
	}
	xs_send(c, XS_READ, 0, path, l);
	return XS_READ;
}

/* N clients, each with one request in flight, 90% READ / 10% WRITE of 8 bytes
 * over 100 keys; one process drives every socket with epoll (no threads), so
 * the figure is the daemon's, not the generator's scheduling. */
static void wl_tput(int n)
{
	struct conn *setup = xs_open();
	struct samples s = { 0 };
	char path[48], m[48];
	int ep;
	for (int k = 0; k < TPUT_KEYS; k++) {
		snprintf(path, sizeof(path), "/bench/tput/k%d", k);
		must(xs_write(setup, 0, path, "01234567"), setup, "setup");
	}
	struct conn **cs = open_polled(n, &ep);
	uint64_t *sent = calloc((size_t)n, sizeof(uint64_t));
	uint32_t *type = calloc((size_t)n, sizeof(uint32_t));
	struct epoll_event *evs = calloc((size_t)n, sizeof(*evs));
	if (!sent || !type || !evs) die("out of memory");
	double cpu0 = daemon_cpu_ns();
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), t = t0;
	int inflight = n;
	long ops = 0;
	for (int i = 0; i < n; i++) {
		sent[i] = now_ns();
		type[i] = tput_send(cs[i], path);
	}
	while (inflight > 0) {
		int r = epoll_wait(ep, evs, n, 10000);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) die("tput: no reply for 10 s (%d requests in flight)", inflight);
		for (int j = 0; j < r; j++) {
			int i = (int)evs[j].data.u32;
			struct conn *c = cs[i];
			xs_fill(c);
			while (xs_take(c)) {
				if (c->h.type == XS_WATCH_EVENT) continue;
				if (c->h.type != type[i])
					die("tput: reply type %u to a request of type %u: %s",
					    c->h.type, type[i], c->h.type == XS_ERROR ? c->payload : "");
				if (c->h.type == XS_READ && c->h.len != 8) die("tput: READ of %u bytes", c->h.len);
				t = now_ns();
				add(&s, (double)(t - sent[i]) / 1e3);
				ops++;
				if (t < end) {
					sent[i] = t;
					type[i] = tput_send(c, path);
				} else {
					inflight--;
				}
			}
		}
	}
	double cpu1 = daemon_cpu_ns();
	snprintf(m, sizeof(m), "tput%d.ops", n);
	emit(m, (double)ops / ((double)(t - t0) / 1e9), "ops/s", "hi");
	snprintf(m, sizeof(m), "tput%d.p50", n);
	emit(m, pct(&s, 0.50), "us", "lo");
	snprintf(m, sizeof(m), "tput%d.p99", n);
	emit(m, pct(&s, 0.99), "us", "lo");
	if (cpu0 >= 0 && cpu1 >= 0) {
		snprintf(m, sizeof(m), "tput%d.cpu", n);
		emit(m, (cpu1 - cpu0) / 1e3 / (double)ops, "us", "lo");
	}
	must(xs_rm(setup, 0, "/bench/tput"), setup, "cleanup");
	close(ep);
	free(evs); free(sent); free(type); free(s.v);
	close_all(cs, n);
	xs_close(setup);
}

/* One transaction client's state: what it waits for. */
enum txn_step { T_START, T_READ, T_WRITE, T_END, T_ABORT };

struct txn_client {
	enum txn_step step;
	uint32_t tx;
	long counter;               /* the value read in this attempt */
	long committed;             /* increments the daemon acknowledged */
	uint64_t began;             /* when this increment's first attempt started */
	char key[32];
};

static void txn_begin(struct conn *c, struct txn_client *tc)
{
	tc->step = T_START;
	xs_send(c, XS_TRANSACTION_START, 0, "", 1);
}

static void txn_send_path(struct conn *c, struct txn_client *tc, uint32_t type, const char *val)
{
	char p[64];
	size_t l = strlen(tc->key) + 1;
	memcpy(p, tc->key, l);
	if (val) {
		size_t vl = strlen(val);
		memcpy(p + l, val, vl);
		l += vl;
	}
	xs_send(c, type, tc->tx, p, l);
}

/* N clients each doing read-modify-write transactions (START, READ counter,
 * WRITE counter+1, END T), retried on EAGAIN; disjoint counters (one per
 * client) or one shared counter.  Commits/s, EAGAIN share of the attempts,
 * and, at the end, the counters read back: every acknowledged commit must be
 * in them (lost updates 0), or xsbench says so and exits with status 3. */
static void wl_txn(int n, int shared)
{
	struct conn *setup = xs_open();
	struct samples s = { 0 };
	struct txn_client *tcs = calloc((size_t)n, sizeof(*tcs));
	struct epoll_event *evs = calloc((size_t)n, sizeof(*evs));
	char m[48], val[32];
	const char *kind = shared ? "s" : "d";
	long eagain = 0, commits = 0;
	int ep;
	if (!tcs || !evs) die("out of memory");
	for (int i = 0; i < n; i++) {
		if (shared) snprintf(tcs[i].key, sizeof(tcs[i].key), "/bench/txn/shared");
		else snprintf(tcs[i].key, sizeof(tcs[i].key), "/bench/txn/c%d", i);
		must(xs_write(setup, 0, tcs[i].key, "0"), setup, "setup");
	}
	struct conn **cs = open_polled(n, &ep);
	double cpu0 = daemon_cpu_ns();
	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(secs * 1e9), t = t0;
	int active = n;
	for (int i = 0; i < n; i++) {
		tcs[i].began = now_ns();
		txn_begin(cs[i], &tcs[i]);
	}
	while (active > 0) {
		int r = epoll_wait(ep, evs, n, 10000);
		if (r < 0 && errno == EINTR) continue;
		if (r <= 0) die("txn: no reply for 10 s (%d clients waiting)", active);
		for (int j = 0; j < r; j++) {
			int i = (int)evs[j].data.u32;
			struct conn *c = cs[i];
			struct txn_client *tc = &tcs[i];
			xs_fill(c);
			while (xs_take(c)) {
				if (c->h.type == XS_WATCH_EVENT) continue;
				int err = c->h.type == XS_ERROR;
				int again = err && strcmp(c->payload, "EAGAIN") == 0;
				if (err && !again) die("txn: step %d: %s", tc->step, c->payload);
				int retry = 0, done = 0;
				switch (tc->step) {
				case T_START:
					if (again) { retry = 1; break; }
					tc->tx = (uint32_t)strtoul(c->payload, NULL, 10);
					tc->step = T_READ;
					txn_send_path(c, tc, XS_READ, NULL);
					break;
				case T_READ:
				case T_WRITE:
					if (again) {     /* some daemons refuse early: abandon this attempt */
						eagain++;
						tc->step = T_ABORT;
						xs_send(c, XS_TRANSACTION_END, tc->tx, "F", 2);
						break;
					}
					if (tc->step == T_READ) {
						tc->counter = strtol(c->payload, NULL, 10);
						snprintf(val, sizeof(val), "%ld", tc->counter + 1);
						tc->step = T_WRITE;
						txn_send_path(c, tc, XS_WRITE, val);
					} else {
						tc->step = T_END;
						xs_send(c, XS_TRANSACTION_END, tc->tx, "T", 2);
					}
					break;
				case T_END:
					if (again) {
						eagain++;
						retry = 1;
						break;
					}
					tc->committed++;
					commits++;
					t = now_ns();
					add(&s, (double)(t - tc->began) / 1e3);
					tc->began = t;
					done = 1;
					break;
				case T_ABORT:   /* its reply, whatever it is, ends the attempt */
					retry = 1;
					break;
				}
				if (retry || done) {
					t = now_ns();
					if (t < end) txn_begin(c, tc);
					else active--;
				}
			}
		}
	}
	double cpu1 = daemon_cpu_ns();
	snprintf(m, sizeof(m), "txn%d%s.commits", n, kind);
	emit(m, (double)commits / ((double)(t - t0) / 1e9), "commits/s", "hi");
	snprintf(m, sizeof(m), "txn%d%s.eagain_pct", n, kind);
	emit(m, commits + eagain ? 100.0 * (double)eagain / (double)(commits + eagain) : 0, "%", "lo");
	snprintf(m, sizeof(m), "txn%d%s.p99", n, kind);
	emit(m, pct(&s, 0.99), "us", "lo");
	if (cpu0 >= 0 && cpu1 >= 0 && commits) {
		snprintf(m, sizeof(m), "txn%d%s.cpu_per_commit", n, kind);
		emit(m, (cpu1 - cpu0) / 1e3 / (double)commits, "us", "lo");
	}
	/* Every acknowledged increment must be in the counters, and nothing more. */
	long lost = 0;
	for (int i = 0; i < (shared ? 1 : n); i++) {
		long want = shared ? commits : tcs[i].committed;
		must(xs_read(setup, 0, tcs[i].key), setup, "read back");
		long got = strtol(setup->payload, NULL, 10);
		if (got != want) {
			fprintf(stderr, "xsbench: LOST UPDATES: %s is %ld after %ld committed increments\n",
				tcs[i].key, got, want);
			lost += labs(want - got);
		}
	}
	snprintf(m, sizeof(m), "txn%d%s.lost", n, kind);
	emit(m, (double)lost, "updates", "info");
	must(xs_rm(setup, 0, "/bench/txn"), setup, "cleanup");
	close(ep);
	free(evs); free(tcs); free(s.v);
	close_all(cs, n);
	xs_close(setup);
	if (lost) {
		fprintf(stderr, "xsbench: txn%d%s: %ld updates lost or invented: the daemon broke "
			"serializability\n", n, kind, lost);
		exit(3);
	}
}

/* ---- scale: a Xen host's store ------------------------------------------ */

/* The nodes of one domain, relative to its home (%d: domid); "B:" entries go
 * under dom0's backend directories instead.  62 writes per domain. */
static const char *const DOMAIN_SHAPE[][2] = {
	{ "name", "guest-%d" }, { "vm", "/vm/00000000-0000-0000-0000-%012d" },
	{ "memory/static-max", "2097152" }, { "memory/target", "2097152" },
	{ "memory/videoram", "-1" }, { "cpu/0/availability", "online" },
	{ "cpu/1/availability", "online" }, { "control/shutdown", "" },
	{ "control/feature-poweroff", "1" }, { "control/feature-reboot", "1" },
	{ "control/feature-suspend", "1" }, { "control/platform-feature-multiprocessor-suspend", "1" },
	{ "console/ring-ref", "1044476" }, { "console/port", "2" },
	{ "console/type", "xenconsoled" }, { "console/backend-id", "0" },
	{ "console/backend", "/local/domain/0/backend/console/%d/0" },
	{ "data/updated", "1" }, { "drivers/0", "Linux 6.1.0" }, { "attr/os", "linux" },
	{ "device/vif/0/backend", "/local/domain/0/backend/vif/%d/0" },
	{ "device/vif/0/backend-id", "0" }, { "device/vif/0/state", "4" },
	{ "device/vif/0/handle", "0" }, { "device/vif/0/mac", "00:16:3e:00:00:01" },
	{ "device/vif/0/tx-ring-ref", "8" }, { "device/vif/0/rx-ring-ref", "9" },
	{ "device/vif/0/event-channel", "10" }, { "device/vif/0/request-rx-copy", "1" },
	{ "device/vif/0/feature-sg", "1" }, { "device/vbd/51712/backend", "/local/domain/0/backend/vbd/%d/51712" },
	{ "device/vbd/51712/backend-id", "0" }, { "device/vbd/51712/state", "4" },
	{ "device/vbd/51712/virtual-device", "51712" }, { "device/vbd/51712/device-type", "disk" },
	{ "device/vbd/51712/ring-ref", "11" }, { "device/vbd/51712/event-channel", "12" },
	{ "device/vbd/51712/protocol", "x86_64-abi" },
	{ "B:vif/%d/0/frontend", "/local/domain/%d/device/vif/0" },
	{ "B:vif/%d/0/frontend-id", "%d" }, { "B:vif/%d/0/online", "1" },
	{ "B:vif/%d/0/state", "4" }, { "B:vif/%d/0/script", "/etc/xen/scripts/vif-bridge" },
	{ "B:vif/%d/0/mac", "00:16:3e:00:00:01" }, { "B:vif/%d/0/bridge", "xenbr0" },
	{ "B:vif/%d/0/handle", "0" }, { "B:vif/%d/0/type", "vif" },
	{ "B:vif/%d/0/hotplug-status", "connected" }, { "B:vif/%d/0/feature-sg", "1" },
	{ "B:vbd/%d/51712/frontend", "/local/domain/%d/device/vbd/51712" },
	{ "B:vbd/%d/51712/frontend-id", "%d" }, { "B:vbd/%d/51712/online", "1" },
	{ "B:vbd/%d/51712/state", "4" }, { "B:vbd/%d/51712/params", "/dev/vg0/guest-%d" },
	{ "B:vbd/%d/51712/type", "phy" }, { "B:vbd/%d/51712/mode", "w" },
	{ "B:vbd/%d/51712/device-type", "disk" }, { "B:vbd/%d/51712/physical-device", "fe:%d" },
	{ "B:vbd/%d/51712/dev", "xvda" }, { "B:vbd/%d/51712/removable", "0" },
	{ "B:vbd/%d/51712/feature-flush-cache", "1" }, { "B:vbd/%d/51712/hotplug-status", "connected" },
};
#define SHAPE_N (sizeof(DOMAIN_SHAPE) / sizeof(DOMAIN_SHAPE[0]))
_Static_assert(SHAPE_N == 62, "62 writes per domain");

/* Format a template where every %d is the domid (pattern given by the table). */
static void fill(char *out, size_t n, const char *tmpl, int domid)
{
	snprintf(out, n, tmpl, domid, domid);
}

/* Write one domain's nodes (in transaction tx_id, or 0). */
static void write_domain(struct conn *c, uint32_t tx, int domid)
{
	char rel[160], path[200], val[160];
	for (size_t i = 0; i < SHAPE_N; i++) {
		const char *k = DOMAIN_SHAPE[i][0];
		fill(rel, sizeof(rel), k[0] == 'B' ? k + 2 : k, domid);
		if (k[0] == 'B') snprintf(path, sizeof(path), "/local/domain/0/backend/%s", rel);
		else snprintf(path, sizeof(path), "/local/domain/%d/%s", domid, rel);
		fill(val, sizeof(val), DOMAIN_SHAPE[i][1], domid);
		must(xs_write(c, tx, path, val), c, path);
	}
}

/* Remove a domain: its home and its two backend directories. */
static void remove_domain(struct conn *c, int domid)
{
	char path[96];
	snprintf(path, sizeof(path), "/local/domain/%d", domid);
	must(xs_rm(c, 0, path), c, path);
	snprintf(path, sizeof(path), "/local/domain/0/backend/vif/%d", domid);
	must(xs_rm(c, 0, path), c, path);
	snprintf(path, sizeof(path), "/local/domain/0/backend/vbd/%d", domid);
	must(xs_rm(c, 0, path), c, path);
}

/* List a directory as libxenstore does: DIRECTORY, and on E2BIG the listing
 * in parts with DIRECTORY_PART.  Fills ids (domids, 0 skipped) if given;
 * returns the number of children, and sets *parts to the requests used. */
static int list_dir(struct conn *c, const char *path, int *ids, int max, int *parts)
{
	char p[128];
	int count = 0;
	size_t plen = strlen(path) + 1;
	*parts = 0;
	if (xs_strs(c, XS_DIRECTORY, 0, 1, path, NULL) == 0) {
		for (char *s = c->payload; s < c->payload + c->h.len; s += strlen(s) + 1, count++)
			if (ids && count < max) ids[count] = atoi(s);
		return count;
	}
	if (strcmp(c->payload, "E2BIG") != 0) die("DIRECTORY %s: %s", path, c->payload);
	for (size_t offset = 0;;) {
		memcpy(p, path, plen);
		size_t n = plen + (size_t)snprintf(p + plen, sizeof(p) - plen, "%zu", offset) + 1;
		must(xs_req(c, XS_DIRECTORY_PART, 0, p, n), c, "DIRECTORY_PART");
		(*parts)++;
		char *s = c->payload + strlen(c->payload) + 1, *stop = c->payload + c->h.len;
		for (; s < stop && *s; s += strlen(s) + 1, count++) {
			if (ids && count < max) ids[count] = atoi(s);
			offset += strlen(s) + 1;
		}
		if (s < stop) break;    /* an empty name: the end of the listing */
	}
	return count;
}

/* The domids in the store (dom0 left out); returns how many. */
static int list_domains(struct conn *c, int *ids, int max)
{
	int parts, n = list_dir(c, "/local/domain", ids, max, &parts), k = 0;
	for (int i = 0; i < n && i < max; i++)
		if (ids[i] != 0) ids[k++] = ids[i];
	return k;
}

static void scale_populate(struct conn *c, int d)
{
	uint64_t t0 = now_ns(), tenth_a = 0, tenth_b = 0, budget_end = t0 + (uint64_t)(budget * 1e9);
	int tenth = d / 10 ? d / 10 : 1, done = 0;
	for (int domid = 1; domid <= d; domid++, done++) {
		uint64_t a = now_ns();
		if (a > budget_end) break;
		write_domain(c, 0, domid);
		uint64_t b = now_ns();
		if (domid <= tenth) tenth_a += b - a;
		if (domid > d - tenth) tenth_b += b - a;
	}
	char m[48];
	snprintf(m, sizeof(m), "scale%d.populate_s", d);
	emit_cut(m, (double)(now_ns() - t0) / 1e9, "s", "lo", done < d);
	snprintf(m, sizeof(m), "scale%d.write_first10_us", d);
	emit(m, (double)tenth_a / 1e3 / ((done < tenth ? done : tenth) * SHAPE_N), "us", "lo");
	if (done == d) {
		snprintf(m, sizeof(m), "scale%d.write_last10_us", d);
		emit(m, (double)tenth_b / 1e3 / (tenth * SHAPE_N), "us", "lo");
	} else {
		fprintf(stderr, "xsbench: populate stopped by the %gs budget at %d of %d domains:"
			" this daemon's other scale figures are for %d domains\n",
			budget, done, d, done);
		snprintf(m, sizeof(m), "scale%d.populated_domains", d);
		emit(m, done, "domains", "info");
	}
}

/* Time fn() repeatedly for `secs` (at least `min` times); return the median. */
#define TIMED_MEDIAN(result, min, scale_ns, body) do {                       \
	struct samples s_ = { 0 };                                          \
	uint64_t e_ = now_ns() + (uint64_t)(secs * 1e9);                    \
	while (now_ns() < e_ || s_.n < (min)) {                             \
		uint64_t a_ = now_ns();                                     \
		body;                                                       \
		add(&s_, (double)(now_ns() - a_) / (scale_ns));             \
	}                                                                   \
	result = pct(&s_, 0.5);                                             \
	free(s_.v);                                                         \
} while (0)

static void scale_measure(struct conn *c, int d)
{
	int *ids = malloc(sizeof(int) * (size_t)(d + 16)), n, parts = 0;
	char path[96], m[64];
	double v;
	if (!ids) die("out of memory");
	n = list_domains(c, ids, d + 16);
	if (n == 0) die("scale: no domains in the store (populate first)");
	snprintf(m, sizeof(m), "scale%d.rss_mib", d);
	if (daemon_rss_mib() >= 0) emit(m, daemon_rss_mib(), "MiB", "lo");

	TIMED_MEDIAN(v, 100, 1e3, {
		snprintf(path, sizeof(path), "/local/domain/%d/name", ids[rnd((uint32_t)n)]);
		must(xs_read(c, 0, path), c, path);
	});
	snprintf(m, sizeof(m), "scale%d.read_p50_us", d);
	emit(m, v, "us", "lo");

	int listed = 0;
	TIMED_MEDIAN(v, 3, 1e6, listed = list_dir(c, "/local/domain", NULL, 0, &parts));
	if (listed != n + 1) fprintf(stderr, "xsbench: listed %d, expected %d\n", listed, n + 1);
	snprintf(m, sizeof(m), "scale%d.list_ms", d);
	emit(m, v, "ms", "lo");
	snprintf(m, sizeof(m), "scale%d.list_requests", d);
	emit(m, parts ? parts + 1 : 1, "requests", "info");

	TIMED_MEDIAN(v, 20, 1e3, {
		must(xs_strs(c, XS_TRANSACTION_START, 0, 1, "", NULL), c, "TRANSACTION_START");
		must(xs_strs(c, XS_TRANSACTION_END, (uint32_t)atoi(c->payload), 1, "T", NULL),
		     c, "TRANSACTION_END");
	});
	snprintf(m, sizeof(m), "scale%d.empty_txn_us", d);
	emit(m, v, "us", "lo");

	/* One more domain created in one transaction, then removed (both timed). */
	struct samples rm = { 0 };
	int extra = 1000000;
	TIMED_MEDIAN(v, 5, 1e6, {
		int rc;
		do {
			must(xs_strs(c, XS_TRANSACTION_START, 0, 1, "", NULL), c, "TRANSACTION_START");
			uint32_t tx = (uint32_t)atoi(c->payload);
			write_domain(c, tx, extra);
			rc = xs_strs(c, XS_TRANSACTION_END, tx, 1, "T", NULL);
			if (rc < 0 && strcmp(c->payload, "EAGAIN") != 0) die("commit: %s", c->payload);
		} while (rc < 0);
		uint64_t r0 = now_ns();
		remove_domain(c, extra);
		add(&rm, (double)(now_ns() - r0) / 1e3);
	});
	snprintf(m, sizeof(m), "scale%d.create_txn_ms", d);
	emit(m, v, "ms", "lo");
	snprintf(m, sizeof(m), "scale%d.rm_domain_us", d);
	emit(m, pct(&rm, 0.5), "us", "lo");
	free(rm.v);
	free(ids);
}

static void scale_teardown(struct conn *c, int d)
{
	int *ids = malloc(sizeof(int) * (size_t)(d + 16)), n, done = 0;
	char m[48];
	if (!ids) die("out of memory");
	n = list_domains(c, ids, d + 16);
	uint64_t t0 = now_ns(), budget_end = t0 + (uint64_t)(budget * 1e9);
	for (; done < n && now_ns() < budget_end; done++) remove_domain(c, ids[done]);
	double s = (double)(now_ns() - t0) / 1e9;
	snprintf(m, sizeof(m), "scale%d.teardown_s", d);
	if (done < n) {
		fprintf(stderr, "xsbench: teardown stopped by the %gs budget at %d of %d domains;"
			" the figure is extrapolated\n", budget, done, n);
		s = s * n / (done ? done : 1);
	}
	emit_cut(m, s, "s", "lo", done < n);
	free(ids);
}

static void wl_scale(int d, const char *phase)
{
	struct conn *c = xs_open();
	int all = strcmp(phase, "all") == 0;
	if (all || strcmp(phase, "populate") == 0) scale_populate(c, d);
	if (all || strcmp(phase, "measure") == 0) scale_measure(c, d);
	if (all || strcmp(phase, "teardown") == 0) scale_teardown(c, d);
	xs_close(c);
}

int main(int argc, char **argv)
{
	struct rlimit rl;
	int o;
	while ((o = getopt(argc, argv, "t:p:B:s:")) != -1) {
		switch (o) {
		case 't': secs = atof(optarg); break;
		case 'p': daemon_pid = atoi(optarg); break;
		case 'B': budget = atof(optarg); break;
		case 's': rng ^= strtoull(optarg, NULL, 10) * 2654435761u; break;
		default: goto usage;
		}
	}
	if (argc - optind < 2) goto usage;
	sock_path = argv[optind];
	const char *wl = argv[optind + 1], *a1 = optind + 2 < argc ? argv[optind + 2] : NULL;
	/* 1000 watchers need 1000 descriptors: raise the soft limit to the hard one. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (strcmp(wl, "lat") == 0) wl_lat();
	else if (strcmp(wl, "pipe") == 0 && a1) wl_pipe(atoi(a1));
	else if (strcmp(wl, "idle") == 0 && a1) wl_idle(atoi(a1));
	else if (strcmp(wl, "watch") == 0 && a1) wl_watch(atoi(a1));
	else if (strcmp(wl, "tput") == 0 && a1 && atoi(a1) > 0) wl_tput(atoi(a1));
	else if (strcmp(wl, "txn") == 0 && a1 && atoi(a1) > 0 && optind + 3 < argc &&
		 (strcmp(argv[optind + 3], "d") == 0 || strcmp(argv[optind + 3], "s") == 0))
		wl_txn(atoi(a1), argv[optind + 3][0] == 's');
	else if (strcmp(wl, "scale") == 0 && a1)
		wl_scale(atoi(a1), optind + 3 < argc ? argv[optind + 3] : "all");
	else goto usage;
	return 0;
usage:
	fprintf(stderr, "usage: xsbench [-t SECS] [-p PID] [-B SECS] [-s SEED] SOCKET "
		"lat | pipe K | idle N | watch N | tput N | txn N d|s\n"
		"  | scale D [populate|measure|teardown|all]\n");
	return 2;
}
